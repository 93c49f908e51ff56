/* /proc/self/maps and /proc/self/smaps, the way tools see protection keys: one anonymous
 * mapping of 3 pages, 2 of them touched, tagged with a key, then split by an mprotect; every
 * line of its entries is printed with the addresses replaced (they differ between kernels).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include "pikku_user.h"

static char text[1 << 16];

static void slurp(const char *path) {
    int fd = open(path, O_RDONLY);
    long n = 0, r;
    if (fd < 0) {
        printf("open %s: %s\n", path, errname(errno));
        text[0] = 0;
        return;
    }
    while ((r = read(fd, text + n, sizeof text - 1 - n)) > 0) n += r;
    close(fd);
    text[n] = 0;
}

/* Prints the entries of [start, end) from `text` (maps: one line each; smaps: the line and the
 * field lines after it), the address range replaced by "A-B". */
static void show(const char *what, unsigned long start, unsigned long end) {
    int in = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long s, e;
        char rest[256];
        if (sscanf(line, "%lx-%lx %255[^\n]", &s, &e, rest) == 3 && strchr(line, '-') < strchr(line, ' ')) {
            in = s >= start && e <= end;
            if (in) printf("%s: A-B %s\n", what, rest);
            continue;
        }
        if (in) printf("%s:   %s\n", what, line);
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    mount_proc_if_absent();
    long page = 4096;
    char *p = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    p[0] = 1;
    p[page] = 2;
    long key = pk_alloc(0, 0);
    printf("pkey_alloc: %ld\n", key);
    if (key > 0) printf("pkey_mprotect: %ld\n", pk_mprotect(p, 3 * page, PROT_READ | PROT_WRITE, key));
    slurp("/proc/self/maps");
    show("maps", (unsigned long)p, (unsigned long)p + 3 * page);
    slurp("/proc/self/smaps");
    show("smaps", (unsigned long)p, (unsigned long)p + 3 * page);
    /* Split it: the last page read-only with key 0. */
    printf("mprotect: %d\n", mprotect(p + 2 * page, page, PROT_READ));
    slurp("/proc/self/maps");
    show("maps", (unsigned long)p, (unsigned long)p + 3 * page);
    slurp("/proc/self/smaps");
    show("smaps", (unsigned long)p, (unsigned long)p + 3 * page);
    return 0;
}
