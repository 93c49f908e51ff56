/* Kernel resource limits, as a program meets them (README "Limits"): 1,000 threads at once
 * work; threads past `threads-max` are refused with EAGAIN (root is exempt from RLIMIT_NPROC,
 * not from threads-max); fds past RLIMIT_NOFILE (1,024) are refused with EMFILE; a private
 * writable mapping larger than RAM is refused with ENOMEM (the overcommit heuristic). Every thread
 * waits on one futex until the main thread releases them all, so they are alive together.
 * Only facts that are the same on every run (and on Linux) are printed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "pikku_user.h"

#define FUTEX_WAIT 0
#define FUTEX_WAKE 1

static volatile int go;
static volatile int started;

static void *waiter(void *arg) {
    (void)arg;
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&go, __ATOMIC_SEQ_CST)) syscall(SYS_futex, &go, FUTEX_WAIT, 0, 0, 0, 0);
    return 0;
}

/* Starts threads (16 KiB stacks) until `max` or a refusal; returns how many started and the
 * error that stopped it (0 if none). Then releases and joins them all. */
static int start_threads(int max, int *error) {
    static pthread_t ids[8192];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 16384);
    go = 0;
    started = 0;
    int n = 0;
    *error = 0;
    while (n < max && n < 8192) {
        int e = pthread_create(&ids[n], &attr, waiter, 0);
        if (e) {
            *error = e;
            break;
        }
        n++;
    }
    while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < n) sched_yield();
    __atomic_store_n(&go, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &go, FUTEX_WAKE, INT_MAX, 0, 0, 0);
    for (int i = 0; i < n; i++) pthread_join(ids[i], 0);
    return n;
}

int main(void) {
    /* 1. 1,000 threads alive at once, released and joined. */
    int error;
    int n = start_threads(1000, &error);
    printf("1000 threads at once: %d started (%s), all joined\n", n, error ? errname(error) : "no error");

    /* 2. Past threads-max (Linux: about RAM / 128 KiB, ~3,800 at 512 MiB): EAGAIN. */
    n = start_threads(8192, &error);
    printf("threads until refused: more than 1000 started: %s; then %s\n", n > 1000 ? "yes" : "no", errname(error));
    n = start_threads(1000, &error);
    printf("and afterwards 1000 again: %d started (%s)\n", n, error ? errname(error) : "no error");

    /* 3. RLIMIT_NOFILE: 1,024 descriptors (0-2 are open), then EMFILE. */
    int opened = 0, last = -1;
    for (;;) {
        int fd = open("/etc/passwd", O_RDONLY);
        if (fd < 0) {
            printf("opened %d more fds (the last is %d), then open = -1 %s\n", opened, last, errname(errno));
            break;
        }
        last = fd;
        opened++;
    }
    int p[2];
    printf("pipe at the limit = %d %s\n", pipe(p), errname(errno));
    for (int fd = 3; fd <= last; fd++) close(fd);
    printf("after closing them, open = %d\n", open("/etc/passwd", O_RDONLY));

    /* 4. Memory (the machine has 512 MiB): a private writable mapping of 1 GiB reserves more
     *    than there is; with MAP_NORESERVE, or read-only, nothing is reserved. */
    const size_t gib = 1UL << 30;
    const int anon = MAP_PRIVATE | MAP_ANONYMOUS;
    void *m = mmap(0, gib, PROT_READ | PROT_WRITE, anon, -1, 0);
    printf("mmap of 1 GiB, private writable: %s\n", m == MAP_FAILED ? errname(errno) : "mapped");
    m = mmap(0, gib, PROT_READ | PROT_WRITE, anon | MAP_NORESERVE, -1, 0);
    printf("the same with MAP_NORESERVE: %s\n", m == MAP_FAILED ? errname(errno) : "mapped");
    if (m != MAP_FAILED) munmap(m, gib);
    m = mmap(0, gib, PROT_READ, anon, -1, 0);
    printf("the same read-only: %s\n", m == MAP_FAILED ? errname(errno) : "mapped");
    if (m != MAP_FAILED) munmap(m, gib);
    return 0;
}
