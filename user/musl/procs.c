/* Processes and protection keys: fork copies the key map and the forking thread's PKRU, exec
 * starts over, and the rest of the process model (COW, pipes, dup2, wait4, kill, orphans).
 * The parent prints; children speak through exit statuses and pipes, so the order is fixed. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "pikku_user.h"
#include "pikku_proc.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000.0 + t.tv_nsec / 1e6;
}

/* The new image after a second thread exec'd: alone, with pid == tid (Linux's de_thread()
 * makes the exec'ing thread the leader). It outlives the old main thread's 100 ms sleep. */
static void after_exec_from_thread(void) {
    int leader = getpid() == syscall(SYS_gettid);
    struct timespec t = {0, 300 * 1000000};
    nanosleep(&t, 0);
    _exit(leader ? 6 : 8);
}

static void *exec_from_thread(void *arg) {
    (void)arg;
    char *args[] = {"/init", "after-exec-from-thread", 0};
    execve("/init", args, environ);
    _exit(99);
}

static void after_exec(void) {
    if (ospke()) printf("after exec: pkru = 0x%08x\n", rdpkru());
    printf("after exec: pkey_alloc(0, 0) = %ld\n", pk_alloc(0, 0));
    exit(5);
}

/* "-1 ENOENT": a result and the errno it left (read after the call, not before). */
static void show(const char *what, long r) {
    int e = errno;
    if (r < 0) printf("%s = -1 %s\n", what, errname(e));
    else printf("%s = %ld\n", what, r);
}

static long cow_key;
static void cow_fault(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)ctx;
    _exit(10 * si->si_code + ((long)si->si_pkey == cow_key));
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "after-exec")) after_exec();
    if (argc > 1 && !strcmp(argv[1], "after-exec-from-thread")) after_exec_from_thread();
    int pk = ospke();
    int st;
    printf("ospke = %d\n", pk);

    /* 1. fork copies the key map and the forking thread's PKRU. */
    long k1 = pk_alloc(0, 0), k2 = pk_alloc(0, PKEY_DISABLE_WRITE);
    printf("parent allocated keys %ld and %ld\n", k1, k2);
    uint32_t parent_pkru = pk ? rdpkru() : 0;
    static volatile int shared = 1;
    pid_t c = spawn();
    if (c == 0) {
        int ok = (!pk || rdpkru() == parent_pkru);
        ok = ok * 2 + (pk_free(k1) == 0 || !pk);
        ok = ok * 2 + (pk_free(k1) < 0);
        if (pk) wrpkru(0x55555554);
        shared = 2;
        _exit(ok); /* 7: PKRU inherited, key freed once, refused the second time */
    }
    waitpid(c, &st, 0);
    status("child checks (7 = PKRU inherited, key 1 freed in the child, then refused)", st);
    printf("parent's PKRU unchanged by the child: %s\n", !pk || rdpkru() == parent_pkru ? "yes" : "no");
    printf("parent's key %ld still allocated: pkey_free = %ld\n", k1, pk_free(k1));
    printf("parent's memory unchanged by the child's write (copy-on-write): %d\n", shared);

    /* 1b. Keys on copy-on-write pages: the page's key travels with the copy. A child whose
     *     PKRU write-disables the key gets SEGV_PKUERR for its write (the key is checked
     *     before any copy is made); with the key open the write makes the child its own copy. */
    if (pk) {
        long kc = pk_alloc(0, 0);
        char *cow = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        pk_mprotect(cow, 4096, PROT_READ | PROT_WRITE, kc);
        cow[0] = 'P';
        if ((c = spawn()) == 0) {
            cow_key = kc;
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = cow_fault;
            sa.sa_flags = SA_SIGINFO;
            sigaction(SIGSEGV, &sa, 0);
            wrpkru(rdpkru() | (2u << (2 * kc)));
            cow[0] = 'C';
            _exit(0);
        }
        waitpid(c, &st, 0);
        status("child writes a shared page under WD (41 = SEGV_PKUERR with the page's key)", st);
        if ((c = spawn()) == 0) {
            cow[0] = 'C';
            _exit(cow[0] == 'C' ? 3 : 4);
        }
        waitpid(c, &st, 0);
        status("child writes it with the key open (3 = its own copy)", st);
        printf("parent's copy still reads '%c', key %ld: pkey_free = %ld\n", cow[0], kc, pk_free(kc));
    }

    /* 2. A pipe and dup2: the child's stdout comes back to the parent. */
    int fds[2];
    printf("pipe = %d\n", pipe(fds));
    c = spawn();
    if (c == 0) {
        close(fds[0]);
        dup2(fds[1], 1);
        printf("hello through a pipe\n");
        fflush(stdout);
        _exit(0);
    }
    close(fds[1]);
    char buf[128];
    long n, total = 0;
    while ((n = read(fds[0], buf + total, sizeof buf - 1 - total)) > 0) total += n;
    buf[total] = 0;
    printf("parent read %ld bytes: %s", total, buf);
    printf("read at end of pipe = %ld\n", read(fds[0], buf, 1));
    waitpid(c, &st, 0);
    close(fds[0]);

    /* 3. Wait statuses. */
    if ((c = spawn()) == 0) _exit(3);
    waitpid(c, &st, 0);
    status("exit(3)", st);
    if ((c = spawn()) == 0) { *(volatile int *)0 = 1; _exit(0); }
    waitpid(c, &st, 0);
    status("null write", st);
    if ((c = spawn()) == 0) { kill(getpid(), SIGKILL); _exit(0); }
    waitpid(c, &st, 0);
    status("kill(self, SIGKILL)", st);
    if ((c = spawn()) == 0) { struct timespec t = {0, 20000000}; nanosleep(&t, 0); _exit(0); }
    printf("WNOHANG while the child sleeps = %d\n", waitpid(c, &st, WNOHANG));
    waitpid(c, &st, 0);
    if ((c = spawn()) == 0) { pause(); _exit(0); }
    printf("kill(child, SIGTERM) = %d\n", kill(c, SIGTERM));
    waitpid(c, &st, 0);
    status("SIGTERM", st);

    /* 4. 100 zombies, all reaped. */
    for (int i = 0; i < 100; i++) if (spawn() == 0) _exit(i);
    long sum = 0;
    int reaped = 0;
    while (wait(&st) > 0) { sum += WEXITSTATUS(st); reaped++; }
    printf("reaped %d zombies, exit codes summing to %ld\n", reaped, sum);

    /* 5. An orphan is reparented to init (this process) and reaped by it. */
    int p2[2];
    pipe(p2);
    if ((c = spawn()) == 0) {
        if (fork() == 0) {
            close(p2[1]);
            char x;
            read(p2[0], &x, 1); /* wait until the parent is gone */
            _exit(getppid() == 1 ? 42 : 1);
        }
        _exit(0);
    }
    waitpid(c, &st, 0);
    close(p2[0]);
    close(p2[1]); /* the orphan's read returns 0: it may go */
    pid_t o = wait(&st);
    printf("the orphan was reaped by init: %s; it saw getppid() == 1: %s\n", o > 0 ? "yes" : "no", WEXITSTATUS(st) == 42 ? "yes" : "no");

    /* 6. exec starts over: key 1 free again, PKRU back to 0x55555554. */
    if ((c = spawn()) == 0) {
        pk_alloc(0, 0);
        pk_alloc(0, 0);
        if (pk) wrpkru(0x55555500);
        char *args[] = {"/init", "after-exec", 0};
        execve("/init", args, environ);
        _exit(99);
    }
    waitpid(c, &st, 0);
    status("after exec", st);

    /* exec from a second thread ends every other thread (Linux: de_thread()): the old main
     * thread, asleep, never wakes to _exit(97); the new image runs alone (6 = pid == tid). */
    if ((c = spawn()) == 0) {
        pthread_t t;
        pthread_create(&t, 0, exec_from_thread, 0);
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, 0);
        _exit(97);
    }
    waitpid(c, &st, 0);
    status("exec from a second thread", st);

    /* 7. Bad input. */
    if ((c = spawn()) == 0) _exit(0);
    show("wait4 with a bad status pointer", syscall(SYS_wait4, c, (void *)0xffff800000000000UL, 0, 0));
    show("wait4 with no children left", syscall(SYS_wait4, -1, &st, 0, 0));
    char *none[] = {"/nope", 0};
    show("execve of a missing path", execve("/nope", none, environ));
    char *pw[] = {"/etc/passwd", 0};
    show("execve of a non-ELF file", execve("/etc/passwd", pw, environ));
    show("kill(99999, 0)", kill(99999, 0));
    show("kill(self, 99)", kill(getpid(), 99));

    /* 8. 1,000 fork/exit cycles (the kernel reports its free frames before and after). */
    int ok = 0;
    for (int i = 0; i < 1000; i++) {
        if ((c = spawn()) == 0) _exit(0);
        if (waitpid(c, &st, 0) == c && st == 0) ok++;
    }
    printf("1000 fork/exit/wait cycles: %d clean\n", ok);

    /* 9. Two processes, two PKRUs, preempted for 3 s: no PKRU leaks between them. */
    int q[2];
    pipe(q);
    for (int i = 0; i < 2; i++) {
        if (spawn() == 0) {
            uint32_t mine = 0x55555554u ^ ((uint32_t)(i + 1) << 12);
            long bad = 0, checks = 0;
            if (pk) wrpkru(mine);
            double start = now_ms();
            while (checks < 20000 || now_ms() - start < 3000) {
                for (volatile int j = 0; j < 200; j++) {}
                if (pk && rdpkru() != mine) bad++;
                checks++;
            }
            write(q[1], &bad, sizeof bad);
            _exit(0);
        }
    }
    long bad_total = 0, bad;
    for (int i = 0; i < 2; i++) { read(q[0], &bad, sizeof bad); bad_total += bad; wait(&st); }
    printf("2 processes x at least 20000 RDPKRU checks: %ld mismatches\n", bad_total);
    return 0;
}
