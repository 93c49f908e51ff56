/* PKRU travels with its thread. PKRU is a register of the CPU (SDM Vol. 3A, 2.7 "Protection
 * Keys"), so a kernel must save it when a thread leaves a CPU and load it where the thread runs
 * next. Four threads, each with its own PKRU value, pin themselves to one CPU after another —
 * 200 moves each, round the CPUs — and after every move check with getcpu that they are where
 * they asked to be and with RDPKRU that their PKRU came along; a short sleep in every tenth
 * round makes them leave the CPU and come back too. Then they run unpinned, yielding, wherever
 * the scheduler puts them. Only counts are printed. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>
#include "pikku_user.h"
#include "pikku_smp.h"

#define THREADS 4
#define MOVES 200
#define UNPINNED_ROUNDS 2000

static int ncpus;

struct mover {
    int index;
    uint32_t pkru;
    long pin_failures, wrong_cpu, moved, pkru_mismatches, unpinned_mismatches;
};

/* Key 0 (bits 0-1) stays open: the stack is key-0 memory. A different value per thread. */
static uint32_t pkru_for(int i) { return 0x55555554u ^ ((uint32_t)(i + 1) << 10); }

static void *mover(void *p) {
    struct mover *m = p;
    int pk = ospke();
    if (pk) wrpkru(m->pkru);
    int previous = -1;
    for (int round = 0; round < MOVES; round++) {
        int target = (m->index + round) % ncpus;
        if (pin_to(target) != 0) m->pin_failures++;
        int cpu = current_cpu();
        if (cpu != target) m->wrong_cpu++;
        if (round > 0 && cpu != previous) m->moved++;
        previous = cpu;
        if (pk && rdpkru() != m->pkru) m->pkru_mismatches++;
        if (round % 10 == 0) {
            struct timespec t = {0, 100000};
            nanosleep(&t, 0);
            if (pk && rdpkru() != m->pkru) m->pkru_mismatches++;
        }
    }
    unsigned long all = ncpus >= 64 ? ~0ul : (1ul << ncpus) - 1;
    setaffinity(0, sizeof all, &all);
    for (int round = 0; round < UNPINNED_ROUNDS; round++) {
        sched_yield();
        if (pk && rdpkru() != m->pkru) m->unpinned_mismatches++;
    }
    return 0;
}

int main(void) {
    smp_program_begin("smp_migrate", 180);
    int pk = ospke();
    ncpus = allowed_cpus();
    printf("ospke = %d, CPUs: %d\n", pk, ncpus);
    struct mover m[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        m[i] = (struct mover){.index = i, .pkru = pkru_for(i)};
        pthread_create(&t[i], 0, mover, &m[i]);
    }
    struct mover sum = {0};
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], 0);
        sum.pin_failures += m[i].pin_failures;
        sum.wrong_cpu += m[i].wrong_cpu;
        sum.moved += m[i].moved;
        sum.pkru_mismatches += m[i].pkru_mismatches;
        sum.unpinned_mismatches += m[i].unpinned_mismatches;
    }
    printf("%d threads x %d pins round %d CPU(s): %ld failed pins, %ld times getcpu was not the pinned CPU\n", THREADS, MOVES, ncpus, sum.pin_failures, sum.wrong_cpu);
    printf("moves to another CPU: %ld (expected %d)\n", sum.moved, ncpus > 1 ? THREADS * (MOVES - 1) : 0);
    printf("PKRU mismatches after a pin or a sleep: %ld\n", sum.pkru_mismatches);
    printf("PKRU mismatches unpinned, %d yields each: %ld\n", UNPINNED_ROUNDS, sum.unpinned_mismatches);
    printf("main thread's PKRU untouched: %s\n", !pk || rdpkru() == 0x55555554 ? "yes" : "no");
    return 0;
}
