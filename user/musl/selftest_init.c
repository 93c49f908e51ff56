/* The init `make selftest` runs Linux's pkey selftests under, on pikku and on Linux alike.
 *
 *   /init root|user PROGRAM [ARG...]
 *
 * First it makes sure /proc and /sys are there (mounting them where they are not, as on
 * Linux's initramfs). As `user` it then drops to uid/gid 1000 the way a login does — setgroups(0, NULL), then
 * setgid(1000), then setuid(1000) (the group first: after setuid it may no longer change it).
 * Then it forks, execs PROGRAM in the child, and as init reaps *every* descendant until wait4
 * says ECHILD: protection_keys' test 18 forks and lets the parent exit 22 times, so the run
 * goes on in a grandchild, then a great-grandchild, … all re-parented to init. Every
 * descendant of a passing run exits 0 (the last after "done (all tests OK)"). The first one
 * that does not is the verdict: a failed assertion exits with its line number, and may leave
 * a child behind that sleeps for ever (test 14's tracee), so init then kills every process
 * left (kill(-1, SIGKILL)) and reaps them too. It ends with one line saying how many it reaped
 * and exits with the first failing status (an exit code, or 128 + the signal, as a shell
 * reports it), or 0.
 */
#include <signal.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/mount.h>
#include <sys/stat.h>
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
    /* protection_keys (as root) writes /proc/sys/vm/nr_hugepages and reads /sys: pikku always
     * has them; Linux's initramfs leaves them to init to mount. */
    int probe = open("/proc/sys/vm/nr_hugepages", O_RDONLY);
    if (probe >= 0) {
        close(probe);
    } else {
        mkdir("/proc", 0555);
        mkdir("/sys", 0555);
        if (mount("proc", "/proc", "proc", 0, NULL) || mount("sysfs", "/sys", "sysfs", 0, NULL)) {
            printf("selftest-init: mounting /proc and /sys failed: %s\n", strerror(errno));
            return 1;
        }
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
    int reaped = 0, failure = 0, status;
    for (;;) {
        pid_t pid = wait4(-1, &status, 0, NULL);
        if (pid < 0) {
            if (errno == EINTR) continue;
            if (errno == ECHILD) break;
            printf("selftest-init: wait4 failed: %s\n", strerror(errno));
            return 1;
        }
        reaped++;
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (code != 0 && failure == 0) {
            failure = code;
            kill(-1, SIGKILL);
        }
    }
    printf("selftest-init: reaped %d, first failing status %d\n", reaped, failure);
    return failure;
}
