/* Threads and the PKRU context-switch path. Four threads each hold a different PKRU and check
 * it with RDPKRU while the timer preempts them; a new thread inherits its creator's PKRU;
 * floating-point work survives preemption bit for bit; join, futex timeouts and nanosleep
 * behave. Only facts that are the same on every run are printed. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "pikku_user.h"
#include "pikku_proc.h"

#define THREADS 4
#define ITERATIONS 25000

struct work {
    int index;
    uint32_t pkru;
    long mismatches;
    double result;
};

/* Key 0 (bits 0-1) must stay open: the stack is key-0 memory. */
static uint32_t pkru_for(int i) { return 0x55555554u ^ ((uint32_t)(i + 1) << 8); }

static double fp_work(int seed, int n) {
    double acc = 0;
    for (int i = 1; i <= n; i++) acc += sqrt((double)i * (seed + 1)) / (1.0 + (double)(i % 7));
    return acc;
}

static double now_ms(void);
static double start_ms;

/* At least ITERATIONS rounds (the floating-point result covers exactly those), and at least
 * 3 s of running, so the timer preempts the threads thousands of times. */
static void *worker(void *p) {
    struct work *w = p;
    int pk = ospke();
    if (pk) wrpkru(w->pkru);
    double acc = 0;
    for (long i = 0; i < ITERATIONS || now_ms() - start_ms < 3000; i++) {
        if (i < ITERATIONS) acc += fp_work(w->index + i % 3, 20);
        else fp_work(w->index, 20);
        if (pk && rdpkru() != w->pkru) w->mismatches++;
        if (i % 256 == 0) sched_yield();
    }
    w->result = acc;
    return 0;
}

static void *report_pkru(void *p) {
    *(uint32_t *)p = ospke() ? rdpkru() : 0;
    return (void *)42;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000.0 + t.tv_nsec / 1e6;
}

#define FUTEX_WAIT_PRIVATE 128 /* FUTEX_WAIT | FUTEX_PRIVATE_FLAG */
#define FUTEX_WAKE_PRIVATE 129 /* FUTEX_WAKE | FUTEX_PRIVATE_FLAG */

/* Two raw futex waiters on one word that stays 0; each says when its wait returned. */
static int fx_word;
static volatile int fx_returned[2];
static void *fx_waiter(void *p) {
    int i = (int)(long)p;
    syscall(SYS_futex, &fx_word, FUTEX_WAIT_PRIVATE, 0, 0, 0, 0);
    fx_returned[i] = 1;
    return 0;
}
static void on_usr1(int sig) { (void)sig; }
int main(void) {
    int pk = ospke();
    printf("ospke = %d\n", pk);

    /* A new thread starts with its creator's PKRU. */
    uint32_t seen = 0, mine = 0x55555514;
    if (pk) wrpkru(mine);
    pthread_t t;
    void *ret;
    pthread_create(&t, 0, report_pkru, &seen);
    pthread_join(t, &ret);
    printf("pthread_join returned %ld\n", (long)ret);
    printf("new thread inherited its creator's PKRU: %s\n", !pk || seen == mine ? "yes" : "no");
    if (pk) wrpkru(0x55555554);

    /* Four threads, four PKRUs, preempted by the timer. */
    struct work w[THREADS];
    pthread_t th[THREADS];
    start_ms = now_ms();
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct work){.index = i, .pkru = pkru_for(i)};
        pthread_create(&th[i], 0, worker, &w[i]);
    }
    long mismatches = 0;
    int exact = 1;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], 0);
        mismatches += w[i].mismatches;
        /* The same work, alone, must give the same bits. */
        double acc = 0;
        for (int k = 0; k < ITERATIONS; k++) acc += fp_work(i + k % 3, 20);
        if (memcmp(&acc, &w[i].result, sizeof acc)) exact = 0;
    }
    printf("%d threads x at least %d RDPKRU checks: %ld mismatches\n", THREADS, ITERATIONS, mismatches);
    printf("main thread's PKRU untouched by its siblings: %s\n", !pk || rdpkru() == 0x55555554 ? "yes" : "no");
    printf("floating-point results bit-exact after preemption: %s\n", exact ? "yes" : "no");

    /* A futex wait with a timeout: a locked mutex, 30 ms. */
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&m);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 30 * 1000000;
    if (until.tv_nsec >= 1000000000) { until.tv_sec++; until.tv_nsec -= 1000000000; }
    double t0 = now_ms();
    int r = pthread_mutex_timedlock(&m, &until);
    double waited = now_ms() - t0;
    printf("pthread_mutex_timedlock on a held mutex: %s after >= 25 ms: %s\n", r == ETIMEDOUT ? "ETIMEDOUT" : strerror(r), waited >= 25 ? "yes" : "no");

    /* nanosleep(50 ms) takes at least 50 ms. */
    t0 = now_ms();
    struct timespec req = {0, 50 * 1000000};
    int s = nanosleep(&req, 0);
    printf("nanosleep(50 ms) = %d, took >= 50 ms: %s\n", s, now_ms() - t0 >= 50 ? "yes" : "no");
    struct timespec bad = {0, 1000000000};
    int bad_r = nanosleep(&bad, 0);
    printf("nanosleep(tv_nsec = 1e9) = %d %s\n", bad_r, errname(errno));

    /* A futex waiter that a signal interrupts leaves the wait queue (Linux: unqueue_me()), so a
     * later FUTEX_WAKE of one waiter wakes the thread that is still waiting — not the departed
     * one — and counts only it. (Whether the interrupted wait returns 0 or EINTR is not
     * printed: Linux says EINTR.) */
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, 0);
    pthread_t a, b;
    pthread_create(&a, 0, fx_waiter, (void *)0);
    sleep_ms(20);
    pthread_kill(a, SIGUSR1);
    pthread_join(a, 0);
    printf("a futex waiter interrupted by a signal returned from its wait: %s\n", fx_returned[0] ? "yes" : "no");
    pthread_create(&b, 0, fx_waiter, (void *)1);
    sleep_ms(20);
    long woken = syscall(SYS_futex, &fx_word, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0);
    for (int i = 0; i < 100 && !fx_returned[1]; i++) sleep_ms(10);
    printf("FUTEX_WAKE(1) after it left = %ld, and the thread still waiting ran: %s\n", woken, fx_returned[1] ? "yes" : "no");
    if (fx_returned[1]) pthread_join(b, 0);
    return 0;
}
