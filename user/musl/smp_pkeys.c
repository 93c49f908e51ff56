/* One key map, several CPUs: 8 threads of one process allocate and free protection keys 20,000
 * times each, all at once. The key map is the process's (Linux: mm->context.pkey_allocation_map,
 * under mmap_lock), so two threads must never be handed the same key at the same time: each
 * thread claims the key it got in a shared table with compare-and-swap, and gives the claim up
 * *before* pkey_free — a key found already claimed was handed out twice. Each pkey_alloc also
 * writes the requested rights into the calling thread's PKRU, and only that thread's. Afterwards
 * all 15 keys can be allocated again: no key leaked. Only counts and verdicts are printed. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include "pikku_user.h"
#include "pikku_smp.h"

#define THREADS 8
#define ROUNDS 20000

/* claim[k]: 0 while nobody holds key k, else the holder's index + 1. */
static int claim[16];
static volatile int start;

struct worker {
    int index;
    long allocated, enospc, other_errors, out_of_range, double_claims, free_failures, pkru_wrong;
    unsigned long cpus_seen; /* bit c: getcpu said CPU c at least once */
};

/* The rights each round asks for: open, write-disabled, access-disabled in turn. */
static unsigned rights_for(int round) { return (unsigned)(round % 3); }

static void *worker(void *p) {
    struct worker *w = p;
    int pk = ospke();
    spin_until(&start, 1);
    for (int round = 0; round < ROUNDS; round++) {
        long key = pk_alloc(0, rights_for(round));
        if (key < 0) {
            if (errno == ENOSPC) w->enospc++;
            else w->other_errors++;
            continue;
        }
        w->allocated++;
        if (key < 1 || key > 15) {
            w->out_of_range++;
            continue;
        }
        if (pk && ((rdpkru() >> (2 * key)) & 3) != rights_for(round)) w->pkru_wrong++;
        int expected = 0;
        if (__atomic_compare_exchange_n(&claim[key], &expected, w->index + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            __atomic_store_n(&claim[key], 0, __ATOMIC_SEQ_CST);
        else
            w->double_claims++;
        if (pk_free(key) != 0) w->free_failures++;
        if (round % 1024 == 0) {
            int cpu = current_cpu();
            if (cpu >= 0 && cpu < 64) w->cpus_seen |= 1ul << cpu;
        }
    }
    return 0;
}

int main(void) {
    smp_program_begin("smp_pkeys", 240);
    int pk = ospke();
    printf("ospke = %d\n", pk);
    struct worker w[THREADS] = {0};
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i].index = i;
        pthread_create(&t[i], 0, worker, &w[i]);
    }
    set_flag(&start, 1);
    struct worker sum = {0};
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], 0);
        sum.allocated += w[i].allocated;
        sum.enospc += w[i].enospc;
        sum.other_errors += w[i].other_errors;
        sum.out_of_range += w[i].out_of_range;
        sum.double_claims += w[i].double_claims;
        sum.free_failures += w[i].free_failures;
        sum.pkru_wrong += w[i].pkru_wrong;
        sum.cpus_seen |= w[i].cpus_seen;
    }
    printf("%d threads x %d pkey_alloc/pkey_free: %ld keys allocated, %ld ENOSPC, %ld other errors\n", THREADS, ROUNDS, sum.allocated, sum.enospc, sum.other_errors);
    printf("keys outside 1..15: %ld\n", sum.out_of_range);
    printf("a key held by two threads at once: %ld times\n", sum.double_claims);
    printf("pkey_free of a held key failed: %ld times\n", sum.free_failures);
    printf("PKRU of the allocating thread without the requested rights: %ld times\n", sum.pkru_wrong);
    printf("the threads ran on more than one CPU: %s\n", __builtin_popcountl(sum.cpus_seen) > 1 ? "yes" : "no");
    printf("main thread's PKRU untouched by the workers' allocations: %s\n", !pk || rdpkru() == 0x55555554 ? "yes" : "no");

    /* No key leaked: all 15 come back, in order, and the 16th is refused. */
    printf("afterwards pkey_alloc gives:");
    for (int i = 0; i < 15; i++) printf(" %ld", pk_alloc(0, 0));
    long r = pk_alloc(0, 0);
    printf("; then %ld %s\n", r, r < 0 ? errname(errno) : "");
    long freed = 0;
    for (int k = 1; k <= 15; k++) freed += pk_free(k) == 0;
    printf("all 15 freed again: %s\n", freed == 15 ? "yes" : "no");
    return 0;
}
