/* The init `make selftest` runs Linux's pkey selftests under, on pikku and on Linux alike.
 *
 *   /init root|user PROGRAM [ARG...]
 *
 * As `user` it first drops to uid/gid 1000 the way a login does — setgroups(0, NULL), then
 * setgid(1000), then setuid(1000) (the group first: after setuid it may no longer change it).
 * Then it forks, execs PROGRAM in the child, and as init reaps *every* descendant until wait4
 * says ECHILD: protection_keys' test 18 forks and lets the parent exit 22 times, so the run
 * goes on in a grandchild, then a great-grandchild, … all re-parented to init. The verdict
 * belongs to the last descendant, so init exits with the last reaped status (an exit code, or
 * 128 + the signal, as a shell reports it) after one closing line saying how many it reaped.
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[1], "root") && strcmp(argv[1], "user"))) {
        fprintf(stderr, "usage: %s root|user PROGRAM [ARG...]\n", argv[0]);
        return 2;
    }
    if (!strcmp(argv[1], "user")) {
        if (setgroups(0, NULL) || setgid(1000) || setuid(1000)) {
            printf("selftest-init: dropping to uid 1000 failed: %s\n", strerror(errno));
            return 1;
        }
    }
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        printf("selftest-init: fork failed: %s\n", strerror(errno));
        return 1;
    }
    if (child == 0) {
        execv(argv[2], argv + 2);
        printf("selftest-init: execv %s failed: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    int reaped = 0, last = 0, status;
    for (;;) {
        pid_t pid = wait4(-1, &status, 0, NULL);
        if (pid < 0) {
            if (errno == EINTR) continue;
            if (errno == ECHILD) break;
            printf("selftest-init: wait4 failed: %s\n", strerror(errno));
            return 1;
        }
        reaped++;
        last = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    printf("selftest-init: reaped %d, the last with status %d\n", reaped, last);
    return last;
}
