/* TLB shootdown, seen from another CPU. Thread B, pinned to CPU 1, reads (or writes) a page in a
 * loop, so that CPU 1's TLB holds the translation, then spins — no system call, its CPU stays
 * in this address space — while thread A on CPU 0 changes the mapping: mprotect(PROT_NONE);
 * mprotect(PROT_READ) under B's writes; pkey_mprotect to a key B's PKRU denies; munmap. When A's
 * call returns, the stale entry must be gone from CPU 1 too (Linux: flush_tlb_mm_range()), so
 * B's next access faults with Linux's si_code — SEGV_ACCERR, SEGV_PKUERR with si_pkey,
 * SEGV_MAPERR — which B's SIGSEGV handler records before it siglongjmps back. A fifth case
 * forks while B writes: fork write-protects the parent's pages, so after fork returns B's writes
 * go to B's own copy and the child's snapshot never changes.
 *
 * Then the deadlock case: threads on three CPUs fault (fresh pages, copy-on-write after fork)
 * while the fourth CPU's thread munmaps and mprotects in a loop — every one of its calls must
 * reach CPUs that may be busy taking a fault, and the program must simply finish. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include "pikku_user.h"
#include "pikku_smp.h"

#define ROUNDS 20
#define WARM_ACCESSES 2000
#define PAGE 4096
#define OFFSET 64 /* B touches page + OFFSET: si_addr must name exactly that byte */

static int ncpus, cpu_a, cpu_b;

/* --- Part 1: one change on CPU 0, one access on CPU 1 --- */

enum change { PROT_NONE_READ, PROT_READ_WRITE, PKEY_READ, MUNMAP_READ, FORK_WRITE };

/* What A did and what B saw. The phases step A and B through one round: A publishes the page
 * and bumps `go`; B warms its TLB and sets `warm`; A changes the mapping and sets `changed`; B
 * accesses and sets `done`. */
static char *volatile page;
static volatile int go, warm, changed, done;
static volatile enum change what;
static volatile int round_faulted, round_code, round_pkey, round_addr_ok;
static volatile int b_wrong_cpu, a_wrong_cpu, warm_faults;
static volatile long counter_writes;
static int key;
static sigjmp_buf b_env;
static volatile int b_expect_fault;

static void on_segv(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)ctx;
    if (!b_expect_fault) {
        /* Not one of B's planned accesses: a real bug. Say so and end. */
        static const char msg[] = "unexpected SIGSEGV\n";
        write(1, msg, sizeof msg - 1);
        _exit(97);
    }
    round_faulted = 1;
    round_code = si->si_code;
    round_pkey = (int)si->si_pkey;
    round_addr_ok = si->si_addr == (void *)(page + OFFSET);
    siglongjmp(b_env, 1);
}

static void *thread_b(void *unused) {
    (void)unused;
    pin_to(cpu_b);
    /* B's PKRU denies the key A will put on the page (B's own register: A's stays open). */
    if (ospke()) wrpkru(rdpkru() | (PKEY_DISABLE_ACCESS << (2 * key)));
    for (int r = 1; r <= 5 * ROUNDS; r++) {
        spin_until(&go, r);
        if (current_cpu() != cpu_b) b_wrong_cpu++;
        volatile char *p = (volatile char *)(page + OFFSET);
        int writes = what == PROT_READ_WRITE || what == FORK_WRITE;
        for (int i = 0; i < WARM_ACCESSES; i++) {
            if (writes) *p = (char)i;
            else (void)*p;
        }
        set_flag(&warm, r);
        if (what == FORK_WRITE) {
            /* Keep writing through the fork: a counter in the page, until A says stop. */
            volatile long *c = (volatile long *)p;
            while (__atomic_load_n(&changed, __ATOMIC_ACQUIRE) != r) (*c)++;
            counter_writes = *c;
        } else {
            spin_until(&changed, r);
            round_faulted = 0;
            b_expect_fault = 1;
            if (sigsetjmp(b_env, 1) == 0) {
                if (what == PROT_READ_WRITE) *p = 'B';
                else (void)*p;
            }
            b_expect_fault = 0;
        }
        if (current_cpu() != cpu_b) b_wrong_cpu++;
        set_flag(&done, r);
    }
    return 0;
}

/* The child of a fork taken while B writes: its copy of the counter must hold still. */
static int child_snapshot_holds(volatile long *c) {
    long before = *c;
    struct timespec t = {0, 20 * 1000000};
    nanosleep(&t, 0);
    return *c == before;
}

/* One round: map a fresh page, let B warm up on it, change it, let B access it. Returns 1 if B
 * saw what Linux shows: the expected si_code at the exact address (and the key), or for the
 * fork, a child whose snapshot held still. */
static int one_round(int r, enum change c) {
    char *p = mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(p, 'A', PAGE);
    page = p;
    what = c;
    set_flag(&go, r);
    spin_until(&warm, r);
    if (current_cpu() != cpu_a) a_wrong_cpu++;
    int child_ok = 1;
    switch (c) {
    case PROT_NONE_READ: mprotect(p, PAGE, PROT_NONE); break;
    case PROT_READ_WRITE: mprotect(p, PAGE, PROT_READ); break;
    case PKEY_READ: pk_mprotect(p, PAGE, PROT_READ | PROT_WRITE, key); break;
    case MUNMAP_READ: munmap(p, PAGE); break;
    case FORK_WRITE: {
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) _exit(child_snapshot_holds((volatile long *)(p + OFFSET)) ? 0 : 1);
        int st;
        waitpid(child, &st, 0);
        child_ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        break;
    }
    }
    set_flag(&changed, r);
    spin_until(&done, r);
    if (c != MUNMAP_READ) munmap(p, PAGE);
    switch (c) {
    case PROT_NONE_READ:
    case PROT_READ_WRITE: return round_faulted && round_code == SEGV_ACCERR && round_addr_ok;
    case PKEY_READ: return round_faulted && round_code == SEGV_PKUERR && round_addr_ok && round_pkey == key;
    case MUNMAP_READ: return round_faulted && round_code == SEGV_MAPERR && round_addr_ok;
    case FORK_WRITE: return child_ok && counter_writes > 0;
    }
    return 0;
}

static void part1(void) {
    static const char *const what_text[] = {
        "mprotect(PROT_NONE) on CPU A, then a read on CPU B: SIGSEGV SEGV_ACCERR at the address",
        "mprotect(PROT_READ) on CPU A under B's writes, then a write on CPU B: SIGSEGV SEGV_ACCERR at the address",
        "pkey_mprotect(key B's PKRU denies) on CPU A, then a read on CPU B: SIGSEGV SEGV_PKUERR with si_pkey at the address",
        "munmap on CPU A, then a read on CPU B: SIGSEGV SEGV_MAPERR at the address",
        "fork on CPU A while B writes on CPU B: the child's copy holds still",
    };
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    key = (int)pk_alloc(0, 0);
    printf("pkey_alloc = %d\n", key);
    pthread_t b;
    pthread_create(&b, 0, thread_b, 0);
    int r = 0;
    for (enum change c = PROT_NONE_READ; c <= FORK_WRITE; c++) {
        int good = 0;
        for (int i = 0; i < ROUNDS; i++) good += one_round(++r, c);
        printf("%s: %d of %d\n", what_text[c], good, ROUNDS);
    }
    pthread_join(b, 0);
    printf("A stayed on CPU %d and B on CPU %d throughout: %s\n", cpu_a, cpu_b, !a_wrong_cpu && !b_wrong_cpu ? "yes" : "no");
}

/* --- Part 2: the deadlock case --- */

#define MUTATOR_ROUNDS 400
#define SHARED_PAGES 16
#define OWN_PAGES 8

static char *shared_area;
static volatile int mutator_done, faulters_ready;
static volatile long faulter_rounds[64];
static int faulter_errors;
static void note_error(void) { __atomic_fetch_add(&faulter_errors, 1, __ATOMIC_SEQ_CST); }

/* A faulting thread: fresh pages written one by one (a fault each), the mutator's area read
 * (readable whatever it does to it), and every 16th round a fork whose child and parent both
 * write the pages (copy-on-write breaks on both sides). */
static void *faulter(void *arg) {
    int i = (int)(long)arg;
    pin_to(i % ncpus);
    while (!__atomic_load_n(&mutator_done, __ATOMIC_ACQUIRE)) {
        char *own = mmap(0, OWN_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (own == MAP_FAILED) { note_error(); break; }
        for (int p = 0; p < OWN_PAGES; p++) own[p * PAGE] = (char)(i + p);
        long sum = 0;
        for (int p = 0; p < SHARED_PAGES; p++) sum += ((volatile char *)shared_area)[p * PAGE];
        if (sum != 0) note_error();
        if (faulter_rounds[i] % 16 == 0) {
            pid_t child = fork();
            if (child == 0) {
                int ok = 1;
                for (int p = 0; p < OWN_PAGES; p++) {
                    ok &= own[p * PAGE] == (char)(i + p);
                    own[p * PAGE] = 'c';
                }
                _exit(ok ? 0 : 1);
            }
            for (int p = 0; p < OWN_PAGES; p++) own[p * PAGE] = 'p';
            int st;
            if (child < 0 || waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) note_error();
            for (int p = 0; p < OWN_PAGES; p++)
                if (own[p * PAGE] != 'p') note_error();
        }
        munmap(own, OWN_PAGES * PAGE);
        if (faulter_rounds[i]++ == 0) __atomic_fetch_add(&faulters_ready, 1, __ATOMIC_SEQ_CST);
    }
    return 0;
}

static void part2(void) {
    int faulters = ncpus > 1 ? ncpus - 1 : 3;
    shared_area = mmap(0, SHARED_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(shared_area, 0, SHARED_PAGES * PAGE);
    pthread_t t[64];
    for (int i = 0; i < faulters; i++) pthread_create(&t[i], 0, faulter, (void *)(long)(i + 1));
    pin_to(cpu_a);
    /* Start once every faulter is faulting. */
    while (__atomic_load_n(&faulters_ready, __ATOMIC_ACQUIRE) < faulters) sched_yield();
    int mutator_errors = 0;
    for (int r = 0; r < MUTATOR_ROUNDS; r++) {
        mutator_errors += mprotect(shared_area, SHARED_PAGES * PAGE, PROT_READ) != 0;
        mutator_errors += mprotect(shared_area, SHARED_PAGES * PAGE, PROT_READ | PROT_WRITE) != 0;
        char *scratch = mmap(0, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        for (int p = 0; p < 4; p++) scratch[p * PAGE] = 1;
        mutator_errors += mprotect(scratch, 4 * PAGE, PROT_NONE) != 0;
        mutator_errors += munmap(scratch, 4 * PAGE) != 0;
    }
    set_flag(&mutator_done, 1);
    for (int i = 0; i < faulters; i++) pthread_join(t[i], 0);
    printf("deadlock case: %d rounds of mprotect/munmap on CPU %d while %d threads faulted and forked on the others: finished, %d failed calls, %d wrong pages or children\n",
           MUTATOR_ROUNDS, cpu_a, faulters, mutator_errors, faulter_errors);
}

int main(void) {
    smp_program_begin("smp_shootdown", 240);
    ncpus = allowed_cpus();
    cpu_a = 0;
    cpu_b = 1 % ncpus;
    printf("ospke = %d, CPUs: %d; A on CPU %d, B on CPU %d\n", ospke(), ncpus, cpu_a, cpu_b);
    long pinned = pin_to(cpu_a);
    printf("A pinned: %s\n", pinned == 0 && current_cpu() == cpu_a ? "yes" : "no");
    part1();
    part2();
    return 0;
}
