/* Helpers the process, signal and tracing test programs share: how a child ended, printed the
 * way the transcripts show it; a fork that flushes stdout first (or the child would print the
 * parent's buffered lines again); a sleep that a handled signal does not cut short. */
#ifndef PIKKU_PROC_H
#define PIKKU_PROC_H
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

static inline void status(const char *what, int st) {
    if (WIFEXITED(st)) printf("%s: exited with %d\n", what, WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) printf("%s: killed by signal %d\n", what, WTERMSIG(st));
    else printf("%s: status 0x%x\n", what, st);
}

static inline pid_t spawn(void) {
    fflush(stdout);
    return fork();
}

static inline void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&t, &t) < 0 && errno == EINTR) {}
}
#endif
