/* Job control: stop signals stop a whole process and SIGCONT continues it; wait4 reports both
 * (WUNTRACED, WCONTINUED); blocking calls interrupted by a stop carry on after it; SA_RESTART
 * restarts an interrupted call; the parent's SIGCHLD says what happened (si_code, si_status).
 * The parent prints; children speak through exit statuses and a pipe, and every wait is on a
 * state the child reaches before the parent looks, so the output does not depend on timing
 * (only the margins of the sleeps do: 100 ms and more, on a loaded machine). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "pikku_user.h"
#include "pikku_proc.h"

#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The SIGCHLDs the parent received, in order. */
static volatile int chld_n;
static volatile int chld_code[64], chld_status[64], chld_pid[64];
static void on_chld(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)ctx;
    if (chld_n < 64) {
        chld_code[chld_n] = si->si_code;
        chld_status[chld_n] = si->si_status;
        chld_pid[chld_n] = si->si_pid;
        chld_n++;
    }
}

static const char *cld(int code) {
    switch (code) {
    case CLD_EXITED: return "CLD_EXITED"; case CLD_KILLED: return "CLD_KILLED";
    case CLD_DUMPED: return "CLD_DUMPED"; case CLD_TRAPPED: return "CLD_TRAPPED";
    case CLD_STOPPED: return "CLD_STOPPED"; case CLD_CONTINUED: return "CLD_CONTINUED";
    default: return "?";
    }
}

/* Prints the SIGCHLDs received since the last call, naming the child. SIGCHLD stays blocked
 * except here, so each one is taken at a known point (a standard signal sent twice while
 * pending is delivered once: every check below follows one event at most). */
static int chld_seen;
static sigset_t chld_set;
static void show_chld(pid_t child) {
    sigprocmask(SIG_UNBLOCK, &chld_set, 0);
    sigprocmask(SIG_BLOCK, &chld_set, 0);
    for (; chld_seen < chld_n; chld_seen++)
        printf("  SIGCHLD: si_code %s, si_status %d, si_pid %s\n", cld(chld_code[chld_seen]),
               chld_status[chld_seen], chld_pid[chld_seen] == child ? "the child" : "another");
}

static void wait_show(pid_t c, int options, const char *what) {
    int st = 0;
    pid_t r = waitpid(c, &st, options);
    if (r < 0) printf("%s: -1 %s\n", what, errname(errno));
    else if (r == 0) printf("%s: 0 (nothing to report)\n", what);
    else status(what, st);
    /* A continued child sends its SIGCHLD when it next runs, after wait4 may have seen it. */
    if (options & WCONTINUED) sleep_ms(100);
    show_chld(c);
}

static volatile int handled;
static void on_usr1(int sig) { (void)sig; handled++; }

static void handle(int sig, void (*fn)(int), int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigaction(sig, &sa, 0);
}

/* A child tells the parent it is about to block, then blocks: the parent waits for the word,
 * then gives the child 100 ms to get into the call. */
static int ready[2];
static void say_ready(void) { write(ready[1], "r", 1); }
static void await_ready(void) {
    char b;
    read(ready[0], &b, 1);
    sleep_ms(100);
}

static int futex_word;
static long futex_wait(int *word, int val, const struct timespec *t) {
    return syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, t);
}

static void *futex_waker(void *arg) {
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, 0);
    sleep_ms(400);
    __atomic_store_n(&futex_word, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1);
    return 0;
}

/* Child bodies. Each returns its exit status. */
static int child_pause(void) {
    for (;;) pause();
    return 0;
}

/* nanosleep(1 s) with a stop and a continue in the middle: it returns 0, no earlier than 1 s. */
static int child_nanosleep(void) {
    long t0 = now_ms();
    struct timespec t = {1, 0}, rem = {7, 7};
    say_ready();
    long r = nanosleep(&t, &rem);
    long took = now_ms() - t0;
    return (r == 0) * 4 + (took >= 1000) * 2 + (rem.tv_sec == 7);
}

/* nanosleep(1 s) interrupted by a handled signal: EINTR, the time left in rem. */
static int child_nanosleep_handled(void) {
    handle(SIGUSR1, on_usr1, 0);
    struct timespec t = {1, 0}, rem = {0, 0};
    say_ready();
    long r = nanosleep(&t, &rem);
    int e = errno;
    return (r == -1 && e == EINTR) * 4 + (handled == 1) * 2 + (rem.tv_sec == 0 && rem.tv_nsec > 0);
}

/* A pipe read interrupted by a handled signal: EINTR without SA_RESTART; with it the read
 * carries on and returns the byte written after the signal. */
static int child_read(int fd, int flags) {
    handle(SIGUSR1, on_usr1, flags);
    char b = 0;
    say_ready();
    long r = read(fd, &b, 1);
    if (r < 0) return errno == EINTR ? 10 + handled : 30;
    return r == 1 && b == 'x' ? 20 + handled : 40;
}

/* A futex wait without a timeout: EINTR without SA_RESTART; with it, the wait carries on until
 * a thread wakes it. With a timeout (a restart block on Linux) it is EINTR either way. */
static int child_futex(int flags, int timeout) {
    handle(SIGUSR1, on_usr1, flags);
    pthread_t th;
    if (!timeout) pthread_create(&th, 0, futex_waker, 0);
    struct timespec t = {0, 800 * 1000000};
    say_ready();
    long r;
    do r = futex_wait(&futex_word, 0, timeout ? &t : 0);
    while (r == 0 && __atomic_load_n(&futex_word, __ATOMIC_SEQ_CST) == 0 && !timeout);
    if (r < 0) return errno == EINTR ? 10 + handled : errno == ETIMEDOUT ? 50 + handled : 30;
    return 20 + handled;
}

/* A futex wait with a timeout, stopped and continued: it times out as if nothing happened. */
static int child_futex_stopped(void) {
    struct timespec t = {0, 800 * 1000000};
    long t0 = now_ms();
    say_ready();
    long r = futex_wait(&futex_word, 0, &t);
    int e = errno;
    return (r == -1 && e == ETIMEDOUT) * 2 + (now_ms() - t0 >= 800);
}

/* wait4 for a grandchild, stopped and continued in the middle: it still reaps it. */
static int child_wait(void) {
    pid_t g = fork();
    if (g == 0) {
        sleep_ms(500);
        _exit(7);
    }
    say_ready();
    int st = 0;
    pid_t r = waitpid(g, &st, 0);
    return r == g && WIFEXITED(st) ? WEXITSTATUS(st) : 99;
}

/* pause() stopped and continued stays in pause; a handled signal ends it with EINTR. */
static int child_pause_handled(void) {
    handle(SIGUSR1, on_usr1, SA_RESTART);
    say_ready();
    long r = pause();
    return (r == -1 && errno == EINTR) * 2 + (handled == 1);
}

/* A thread that ticks every 10 ms and keeps the longest gap between two ticks: a stop of its
 * process shows as a gap as long as the stop. */
static volatile long ticker_gap, ticker_stop;
static void *ticker(void *arg) {
    (void)arg;
    long last = now_ms();
    while (!ticker_stop) {
        sleep_ms(10);
        long t = now_ms();
        if (t - last > ticker_gap) ticker_gap = t - last;
        last = t;
    }
    return 0;
}

/* Two threads, one ticking and one asleep, stopped for 400 ms: both stop (the ticker's longest
 * gap is the stop), and both go on. */
static int child_two_threads(void) {
    pthread_t th;
    pthread_create(&th, 0, ticker, 0);
    say_ready();
    sleep_ms(1000);
    ticker_stop = 1;
    pthread_join(th, 0);
    return ticker_gap >= 300 ? 1 : 2;
}

static pid_t start(int (*body)(void)) {
    pid_t c = spawn();
    if (c == 0) _exit(body());
    return c;
}

static void stop_and_continue(pid_t c, const char *what) {
    printf("%s\n", what);
    kill(c, SIGSTOP);
    wait_show(c, WUNTRACED, "  waitpid(WUNTRACED) after SIGSTOP");
    sleep_ms(100);
    kill(c, SIGCONT);
    wait_show(c, WCONTINUED, "  waitpid(WCONTINUED) after SIGCONT");
}

static int read_fd;
static int read_flags;
static int child_read_body(void) { return child_read(read_fd, read_flags); }
static int futex_flags, futex_timeout;
static int child_futex_body(void) { return child_futex(futex_flags, futex_timeout); }

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_chld;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGCHLD, &sa, 0);
    sigemptyset(&chld_set);
    sigaddset(&chld_set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld_set, 0);
    pipe(ready);

    /* 1. Stop, continue, kill. */
    pid_t c = start(child_pause);
    kill(c, SIGSTOP);
    wait_show(c, WUNTRACED, "waitpid(WUNTRACED) after SIGSTOP");
    wait_show(c, WUNTRACED | WNOHANG, "waitpid(WUNTRACED|WNOHANG) again");
    kill(c, SIGSTOP);
    wait_show(c, WUNTRACED | WNOHANG, "waitpid(WUNTRACED|WNOHANG) after a second SIGSTOP");
    kill(c, SIGCONT);
    wait_show(c, WCONTINUED, "waitpid(WCONTINUED) after SIGCONT");
    wait_show(c, WCONTINUED | WNOHANG, "waitpid(WCONTINUED|WNOHANG) again");
    kill(c, SIGCONT);
    wait_show(c, WCONTINUED | WNOHANG, "waitpid(WCONTINUED|WNOHANG) after SIGCONT to a running child");
    kill(c, SIGSTOP);
    wait_show(c, WUNTRACED, "waitpid(WUNTRACED) after SIGSTOP");
    kill(c, SIGKILL);
    wait_show(c, 0, "waitpid after SIGKILL of the stopped child");

    /* 2. A stop that nobody waits for with WUNTRACED: plain waitpid sees only the end. */
    c = start(child_pause);
    kill(c, SIGSTOP);
    sleep_ms(100);
    show_chld(c);
    kill(c, SIGTERM);
    kill(c, SIGCONT);
    wait_show(c, 0, "waitpid after SIGSTOP, SIGTERM, SIGCONT");

    /* 3. SIGCHLD for each way to end. */
    c = spawn();
    if (c == 0) _exit(3);
    wait_show(c, 0, "waitpid of a child that exited with 3");
    c = spawn();
    if (c == 0) {
        raise(SIGSEGV);
        _exit(0);
    }
    wait_show(c, 0, "waitpid of a child that segfaulted");
    c = spawn();
    if (c == 0) abort();
    wait_show(c, 0, "waitpid of a child that aborted");

    /* 4. The stop signals with their default action, sent to a child (in init's process group,
     *    which has no parent outside it: an orphaned process group). */
    int stopsigs[] = {SIGTSTP, SIGTTIN, SIGTTOU};
    for (int i = 0; i < 3; i++) {
        c = start(child_pause);
        kill(c, stopsigs[i]);
        sleep_ms(100);
        printf("signal %d: ", stopsigs[i]);
        wait_show(c, WUNTRACED | WNOHANG, "waitpid(WUNTRACED|WNOHANG)");
        kill(c, SIGKILL);
        wait_show(c, 0, "  waitpid after SIGKILL");
    }

    /* 5. Blocking calls stopped and continued. */
    c = start(child_nanosleep);
    await_ready();
    stop_and_continue(c, "nanosleep(1 s), stopped and continued:");
    wait_show(c, 0, "  waitpid (7 = returned 0, after 1 s, rem untouched)");

    c = start(child_futex_stopped);
    await_ready();
    stop_and_continue(c, "futex wait (800 ms timeout), stopped and continued:");
    wait_show(c, 0, "  waitpid (3 = ETIMEDOUT after 800 ms)");

    c = start(child_wait);
    await_ready();
    stop_and_continue(c, "wait4 for a grandchild, stopped and continued:");
    wait_show(c, 0, "  waitpid (7 = reaped the grandchild's status)");

    c = start(child_pause_handled);
    await_ready();
    stop_and_continue(c, "pause(), stopped and continued:");
    sleep_ms(100);
    kill(c, SIGUSR1);
    wait_show(c, 0, "  waitpid after SIGUSR1 (3 = pause returned EINTR after the handler)");

    /* 6. A handled signal interrupts; SA_RESTART restarts what can be restarted. */
    c = start(child_nanosleep_handled);
    await_ready();
    kill(c, SIGUSR1);
    wait_show(c, 0, "nanosleep interrupted by a handler (7 = EINTR, handler ran, rem set)");

    int data[2];
    for (int restart = 0; restart < 2; restart++) {
        pipe(data);
        read_fd = data[0];
        read_flags = restart ? SA_RESTART : 0;
        c = start(child_read_body);
        await_ready();
        kill(c, SIGUSR1);
        sleep_ms(100);
        write(data[1], "x", 1);
        printf("pipe read, handler %s SA_RESTART: ", restart ? "with" : "without");
        wait_show(c, 0, "waitpid (11 = EINTR, 21 = read the byte; handler ran)");
        close(data[0]);
        close(data[1]);
    }
    for (int timeout = 0; timeout < 2; timeout++) {
        for (int restart = 0; restart < 2; restart++) {
            futex_flags = restart ? SA_RESTART : 0;
            futex_timeout = timeout;
            c = start(child_futex_body);
            await_ready();
            kill(c, SIGUSR1);
            printf("futex wait %s timeout, handler %s SA_RESTART: ", timeout ? "with" : "without", restart ? "with" : "without");
            wait_show(c, 0, "waitpid (11 = EINTR, 21 = woken; handler ran)");
        }
    }

    /* 7. A stopped process's pending signals wait for SIGCONT; SIGKILL does not. */
    c = start(child_pause_handled);
    await_ready();
    kill(c, SIGSTOP);
    wait_show(c, WUNTRACED, "waitpid(WUNTRACED) after SIGSTOP");
    kill(c, SIGUSR1);
    wait_show(c, WNOHANG, "waitpid(WNOHANG) after SIGUSR1 to the stopped child");
    kill(c, SIGCONT);
    wait_show(c, 0, "waitpid after SIGCONT (3 = the handler ran, pause returned EINTR)");

    /* 8. A process of two threads stops as a whole. */
    c = start(child_two_threads);
    await_ready();
    kill(c, SIGSTOP);
    wait_show(c, WUNTRACED, "two threads: waitpid(WUNTRACED) after SIGSTOP");
    sleep_ms(400);
    kill(c, SIGCONT);
    wait_show(c, 0, "two threads: waitpid (1 = the ticking thread stopped too)");

    wait_show(-1, WNOHANG, "waitpid(-1, WNOHANG) at the end");
    return 0;
}
