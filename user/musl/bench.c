/* pikku's benchmarks: instruction counts of the protection-key hot paths. Run under QEMU
 * `-icount shift=0`, where the guest TSC advances one tick per instruction, so an RDTSC
 * difference is an instruction count — deterministic, and comparable with Linux on the same
 * emulated CPU. Per operation: the cheapest batch (of `per` operations) minus the empty loop,
 * divided by `per`, and the mean. One line per figure: `bench NAME MIN MEAN OPS`. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <ucontext.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include "pikku_user.h"

static inline uint64_t tsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline long sys2(long n, long a, long b) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return r;
}

static inline long sys4(long n, long a, long b, long c, long d) {
    long r;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return r;
}

static double empty_min, empty_mean; /* per operation, for a batch of 100 */

#define MEASURE(name, batches, per, body)                                                   \
    do {                                                                                  \
        uint64_t best = ~0ull, total = 0;                                                   \
        for (int b_ = 0; b_ < (batches); b_++) {                                           \
            uint64_t t0 = tsc();                                                          \
            for (int i_ = 0; i_ < (per); i_++) {                                           \
                body;                                                                     \
                __asm__ volatile("" ::: "memory");                                        \
            }                                                                             \
            uint64_t d = tsc() - t0;                                                      \
            if (d < best) best = d;                                                       \
            total += d;                                                                   \
        }                                                                                 \
        report(name, (double)best / (per), (double)total / (batches) / (per), (long)(batches) * (per)); \
    } while (0)

static void report(const char *name, double min, double mean, long ops) {
    printf("bench %-28s %12.1f %12.1f %8ld\n", name, min - empty_min, mean - empty_mean, ops);
}

static volatile int stop;
static uint32_t partner_pkru;

static void *partner(void *arg) {
    (void)arg;
    if (ospke()) wrpkru(partner_pkru);
    while (!stop) sched_yield();
    return 0;
}

static void ping_pong(const char *name, uint32_t theirs) {
    partner_pkru = theirs;
    stop = 0;
    pthread_t t;
    pthread_create(&t, 0, partner, 0);
    sched_yield();
    MEASURE(name, 100, 100, sched_yield());
    stop = 1;
    pthread_join(t, 0);
}

static char *touched(long pages) {
    char *p = mmap(0, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (long i = 0; i < pages; i++) p[i * 4096] = 1;
    return p;
}

/* The "pkey_mprotect N pages" rows for the first `count` of 1, 512 and 32,768 pages: each call
 * moves the whole (touched) range to the other of keys k1 and k2. The main rows take all three;
 * `bench page-tables` the first two. */
static void mprotect_rows(long k1, long k2, int count) {
    static const long sizes[] = {1, 512, 32768};
    static const int batches[] = {100, 20, 4}, per[] = {100, 10, 2};
    for (int s = 0; s < count; s++) {
        char *p = touched(sizes[s]);
        char name[64];
        snprintf(name, sizeof name, "pkey_mprotect %ld pages", sizes[s]);
        long flip = 0;
        MEASURE(name, batches[s], per[s], sys4(329, (long)p, sizes[s] * 4096, PROT_READ | PROT_WRITE, (flip++ & 1) ? k1 : k2));
        munmap(p, sizes[s] * 4096);
    }
}

static void calibrate(void);
static void body(void);
static int shootdown_row(void);
static int page_table_rows(void);

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "shootdown") == 0) return shootdown_row();
    if (argc > 1 && strcmp(argv[1], "page-tables") == 0) return page_table_rows();
    calibrate();
    body();
    return 0;
}

static void calibrate(void) {
    /* Calibration: a loop of exactly 2,000,001 instructions (mov + 1,000,000 x (dec, jnz)). */
    uint64_t t0 = tsc();
    __asm__ volatile("mov $1000000, %%ecx\n1: dec %%ecx\njnz 1b" ::: "ecx", "cc");
    uint64_t loop = tsc() - t0;
    t0 = tsc();
    uint64_t window = tsc() - t0;
    printf("calibration: a 2000001-instruction loop reads as %llu ticks; an empty window as %llu\n",
           (unsigned long long)(loop - window), (unsigned long long)window);

    /* The empty loop: what MEASURE costs around nothing. */
    empty_min = empty_mean = 0;
    {
        uint64_t best = ~0ull, total = 0;
        for (int b = 0; b < 100; b++) {
            uint64_t s = tsc();
            for (int i = 0; i < 100; i++) __asm__ volatile("" ::: "memory");
            uint64_t d = tsc() - s;
            if (d < best) best = d;
            total += d;
        }
        empty_min = (double)best / 100;
        empty_mean = (double)total / 100 / 100;
    }
    printf("empty loop: %.2f instructions per iteration (subtracted below)\n", empty_min);
    printf("%-34s %12s %12s %8s\n", "", "min", "mean", "ops");
}

static void body(void) {

    MEASURE("getpid", 100, 100, sys2(39, 0, 0));
    int pk = ospke();
    if (pk) {
        MEASURE("pkey_alloc+pkey_free", 100, 100, sys2(331, sys2(330, 0, 0), 0));
        MEASURE("rdpkru", 100, 100, (void)rdpkru());
        uint32_t v = 0x55555554;
        MEASURE("wrpkru", 100, 100, (wrpkru(v), v ^= 0xc));
        wrpkru(0x55555554);
    }
    ping_pong("yield round trip, same PKRU", 0x55555554);
    if (pk) ping_pong("yield round trip, other PKRU", 0x55555554 ^ 0xc0);

    if (pk) {
        long k1 = sys2(330, 0, 0), k2 = sys2(330, 0, 0);
        mprotect_rows(k1, k2, 3);
        /* One page's pkey_mprotect in an address space with many areas (neighbours alternate
         * between read-only and read-write, so none merge). Each call visits another area, in a
         * fixed pseudo-random order (a 64-bit LCG, the same on both kernels), so that the
         * figure measures the lookup, not a "last area" cache. Each area keeps its own
         * protection, so neighbours never become alike and merge; only the key changes, to the
         * other one of two at every visit.
         * The order is drawn before the measurement: inside the loop, one array load. */
        enum { AREAS = 50000, OPS = 100 * 100 };
        /* The growth series: 1, 100, 1,000, 10,000 and 50,000 areas (BENCHMARKS.md's "Many
         * areas" table). */
        long counts[] = {1, 100, 1000, 10000, AREAS};
        static char *area[AREAS];
        static char *visit[OPS];
        static long visit_prot[OPS], visit_key[OPS];
        static char key_bit[AREAS];
        long made = 0;
        uint64_t lcg = 0x9e3779b97f4a7c15ull;
        for (int c = 0; c < (int)(sizeof counts / sizeof counts[0]); c++) {
            while (made < counts[c]) {
                area[made] = mmap(0, 4096, (made & 1) ? PROT_READ : PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                made++;
            }
            for (int k = 0; k < OPS; k++) {
                lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
                long i = (long)((lcg >> 33) % (uint64_t)made);
                visit[k] = area[i];
                visit_prot[k] = (i & 1) ? PROT_READ : PROT_READ | PROT_WRITE;
                key_bit[i] ^= 1; /* each visit moves its area to the other key: always a change */
                visit_key[k] = key_bit[i] ? k1 : k2;
            }
            char name[64];
            snprintf(name, sizeof name, "pkey_mprotect in %ld areas", counts[c]);
            int k = 0;
            MEASURE(name, 100, 100, (sys4(329, (long)visit[k], 4096, visit_prot[k], visit_key[k]), k++));
        }
    }
    if (pk) {
        /* A protection-key fault, its handler, and rt_sigreturn: one round trip per access. */
        catch_key_faults();
        long k = sys2(330, 0, 1);
        volatile char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        sys4(329, (long)p, 4096, PROT_READ | PROT_WRITE, k);
        uint32_t closed = rdpkru() | (1u << (2 * k));
        MEASURE("pkey fault+handler+sigreturn", 20, 50, (wrpkru(closed), p[0] = 1));
    }
    printf("bench done\n");
}

/* `bench shootdown` (booted with two CPUs): a one-page pkey_mprotect while a second thread of
 * the process spins with PAUSE on CPU 1, so the address space is loaded there and every call
 * must make CPU 1 forget the page (TLB shootdown) before it returns. Under -icount the vCPUs run
 * in turn on one instruction counter: the figure counts CPU 1's instructions too (its PAUSE
 * loop while it waits, the IPI and the INVLPG). */
static volatile int spin_stop, spinning;

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void *spinner(void *arg) {
    (void)arg;
    pin(1);
    spinning = 1;
    while (!spin_stop) __asm__ volatile("pause");
    return 0;
}

static int shootdown_row(void) {
    pin(0);
    calibrate();
    if (ospke()) {
        long k1 = sys2(330, 0, 0), k2 = sys2(330, 0, 0);
        char *p = touched(1);
        pthread_t t;
        pthread_create(&t, 0, spinner, 0);
        while (!spinning) __asm__ volatile("pause");
        long flip = 0;
        MEASURE("pkey_mprotect 1 page, other thread on CPU 1", 100, 100, sys4(329, (long)p, 4096, PROT_READ | PROT_WRITE, (flip++ & 1) ? k1 : k2));
        spin_stop = 1;
        pthread_join(t, 0);
    }
    printf("bench done\n");
    /* With two CPUs, Linux's panic at init's exit can overtake the last line on the serial
     * console: wait until it has been sent. */
    fflush(stdout);
    tcdrain(1);
    return 0;
}

/* `bench page-tables`: system calls that write page tables, for pikku with its page tables
 * guarded by a supervisor key (PKS: each such call opens one write window, two WRMSRs) and
 * without (`pks=off`) — `make bench` boots both. */
static int page_table_rows(void) {
    calibrate();
    if (ospke()) {
        long k1 = sys2(330, 0, 0), k2 = sys2(330, 0, 0);
        mprotect_rows(k1, k2, 2);
    }
    MEASURE("mmap+first touch+munmap", 100, 100, {
        volatile char *q = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        q[0] = 1;
        munmap((void *)q, 4096);
    });
    MEASURE("fork+exit+wait", 10, 10, {
        pid_t child = fork();
        if (child == 0) _exit(0);
        waitpid(child, 0, 0);
    });
    printf("bench done\n");
    return 0;
}
