/* Memory that is not a private page of one's own (issue #17, items 4–6): the shared zero page
 * behind anonymous memory that was only read, shared anonymous memory (MAP_SHARED |
 * MAP_ANONYMOUS) across fork, mprotect splits, munmap of a part and MADV_DONTNEED, what
 * mincore(2) reports for each — and its checks in Linux's order — and MAP_FIXED_NOREPLACE.
 * One line per observable fact; no addresses (they differ between kernels).
 * Run under `-cpu max,la57=off` (four-level paging, as pikku's) for the top-of-user-space lines.
 * (The last user page itself is left alone: pikku's stack ends there, Linux's is randomised
 * lower — on Linux a mapping there works, and mincore of it ending at 2^47 - 4 KiB is 0.) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "pikku_user.h"

#define PAGE 4096UL
/* The last user page of four-level paging: TASK_SIZE_MAX = 2^47 - 4 KiB. */
#define TASK_SIZE 0x7ffffffff000UL
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static void show(const char *what, long r) {
    if (r == -1)
        printf("%s = -1 %s\n", what, errname(errno));
    else
        printf("%s = %ld\n", what, r);
}

/* mincore through the raw system call (no libc wrapper in the way), -errno on failure. */
static long mincore_raw(unsigned long start, unsigned long len, void *vec) {
    long r = syscall(SYS_mincore, start, len, vec);
    return r == -1 ? -errno : r;
}

static unsigned char vec[64];

/* mincore of `pages` pages from `p`, printed as one digit per page ('.' for a byte left as
 * it was: the vector is filled with 0xee first). */
static void residency(const char *what, void *p, unsigned long pages) {
    memset(vec, 0xee, sizeof vec);
    long r = mincore_raw((unsigned long)p, pages * PAGE, vec);
    printf("mincore %s = %s ", what, r == 0 ? "0" : errname((int)-r));
    for (unsigned long i = 0; i < pages; i++) putchar(vec[i] == 0xee ? '.' : '0' + vec[i]);
    putchar('\n');
}

static char text[1 << 16];

static void slurp(const char *path) {
    int fd = open(path, O_RDONLY);
    long n = 0, r;
    text[0] = 0;
    if (fd < 0) return;
    while ((r = read(fd, text + n, sizeof text - 1 - n)) > 0) n += r;
    close(fd);
    text[n] = 0;
}

/* The smaps fields `Rss:` and `Anonymous:` of the area starting at `p`. */
static void smaps_rss(const char *what, void *p) {
    slurp("/proc/self/smaps");
    int in = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = s == (unsigned long)p;
            continue;
        }
        if (in && (!strncmp(line, "Rss:", 4) || !strncmp(line, "Anonymous:", 10))) printf("smaps %s: %s\n", what, line);
    }
}

/* The permissions and offset fields of every /proc/self/maps entry inside [p, p + len). */
static void maps_pieces(const char *what, char *p, unsigned long len) {
    slurp("/proc/self/maps");
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long s, e;
        char perms[8], offset[32];
        if (sscanf(line, "%lx-%lx %7s %31s", &s, &e, perms, offset) == 4 && s >= (unsigned long)p && e <= (unsigned long)p + len)
            printf("maps %s: page %lu-%lu %s %s\n", what, (s - (unsigned long)p) / PAGE, (e - (unsigned long)p) / PAGE, perms, offset);
    }
}

/* Runs `f(p)` in a child and waits for it. */
static void in_child(void (*f)(char *), char *p) {
    int status = run_in_child(f, p);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) printf("child ended with status %#x\n", status);
}

static void child_writes_zero_page(char *p);

static void zero_page(void) {
    char *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    residency("private, untouched", p, 4);
    volatile char sum = p[0] + p[PAGE] + p[2 * PAGE];
    printf("zero page: read %d from three pages never written\n", sum);
    residency("private, three read", p, 4);
    smaps_rss("three read", p);
    p[PAGE] = 7;
    residency("private, one written", p, 4);
    smaps_rss("one written", p);
    printf("zero page: the written page holds %d, its neighbours %d %d\n", p[PAGE], p[0], p[2 * PAGE]);
    /* A child writes a page both only read: its copy, not the parent's. */
    in_child(child_writes_zero_page, p);
    printf("zero page: after the child's write the parent reads %d\n", p[2 * PAGE]);
    printf("mprotect read-only = %d, read again %d\n", mprotect(p, 4 * PAGE, PROT_READ), p[3 * PAGE]);
    residency("private, read-only, all read", p, 4);
    printf("mprotect read-write = %d\n", mprotect(p, 4 * PAGE, PROT_READ | PROT_WRITE));
    p[3 * PAGE] = 9;
    printf("zero page: written after mprotect: %d %d %d %d\n", p[0], p[PAGE], p[2 * PAGE], p[3 * PAGE]);
    smaps_rss("two written", p);
    show("madvise DONTNEED", madvise(p, 4 * PAGE, MADV_DONTNEED));
    residency("private, dropped", p, 4);
    printf("zero page: after DONTNEED %d %d\n", p[PAGE], p[3 * PAGE]);
    munmap(p, 4 * PAGE);
}

static void child_writes_zero_page(char *p) {
    p[2 * PAGE] = 3;
    printf("child: wrote %d into a page only read before the fork\n", p[2 * PAGE]);
}

static void child_of_private(char *p) {
    printf("child: reads %d, writes 5\n", p[0]);
    p[0] = 5;
}

static void child_writes_shared(char *s) {
    printf("child: sees '%c' at page 0, '%c' at page 4\n", s[0], s[4 * PAGE] ? s[4 * PAGE] : '0');
    s[0] = 'c';
    s[PAGE] = 'C';
}

static void child_after_split(char *s) {
    printf("child: page 2 (read-only piece) holds '%c'\n", s[2 * PAGE]);
    s[4 * PAGE] = 'D';
    s[7 * PAGE] = 'E';
}

static void child_after_dontneed(char *s) {
    printf("child: after the parent's DONTNEED, page 0 holds '%c'\n", s[0]);
    residency("shared, in the child", s, 8);
}

static void shared_anonymous(void) {
    char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    volatile char r = p[0];
    (void)r;
    in_child(child_of_private, p);
    printf("private after fork: parent still reads %d\n", p[0]);
    munmap(p, PAGE);

    char *s = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    residency("shared, untouched", s, 8);
    s[0] = 'P';
    residency("shared, one written", s, 8);
    in_child(child_writes_shared, s);
    printf("parent: sees '%c' at page 0, '%c' at page 1\n", s[0], s[PAGE]);
    residency("shared, after the child", s, 8);
    volatile char hole = s[3 * PAGE];
    printf("parent: reads %d from page 3, never written\n", hole);
    residency("shared, page 3 read", s, 8);
    /* Split the area three ways, then take a page out of its tail. */
    s[2 * PAGE] = 'R';
    show("mprotect pages 2-3 read-only", mprotect(s + 2 * PAGE, 2 * PAGE, PROT_READ));
    long key = pk_alloc(0, 0);
    if (key > 0) show("pkey_mprotect page 5", pk_mprotect(s + 5 * PAGE, PAGE, PROT_READ | PROT_WRITE, key));
    else printf("pkey_mprotect page 5 = (no keys)\n");
    show("munmap page 6", munmap(s + 6 * PAGE, PAGE));
    maps_pieces("split", s, 8 * PAGE);
    in_child(child_after_split, s);
    printf("parent: sees '%c' at page 4, '%c' at page 7\n", s[4 * PAGE], s[7 * PAGE]);
    show("madvise DONTNEED pages 0-1", madvise(s, 2 * PAGE, MADV_DONTNEED));
    residency("shared, after DONTNEED", s, 6);
    printf("parent: after DONTNEED, '%c' '%c' kept\n", s[0], s[PAGE]);
    show("madvise DONTNEED page 0 again", madvise(s, PAGE, MADV_DONTNEED));
    in_child(child_after_dontneed, s);
    /* Unmapped in the parent, the object lives on in a child that still maps it. */
    show("munmap all", munmap(s, 8 * PAGE));
    if (key > 0) pk_free(key);
    /* Shared anonymous memory is accounted when it is mapped, whatever its protection (Linux:
     * its shmem file's `shmem_acct_size()`); private memory only when writable. */
    const unsigned long tib = 1UL << 40;
    char *big = mmap(NULL, tib, PROT_READ, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    printf("shared 1 TiB, read-only: %s\n", big == MAP_FAILED ? errname(errno) : "mapped");
    if (big != MAP_FAILED) munmap(big, tib);
    big = mmap(NULL, tib, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    printf("shared 1 TiB, MAP_NORESERVE: %s\n", big == MAP_FAILED ? errname(errno) : "mapped");
    if (big != MAP_FAILED) munmap(big, tib);
    big = mmap(NULL, tib, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("private 1 TiB, read-only: %s\n", big == MAP_FAILED ? errname(errno) : "mapped");
    if (big != MAP_FAILED) munmap(big, tib);
}

static void mincore_checks(void) {
    char *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(p + 3 * PAGE, PAGE);
    p[0] = 1;
    p[2 * PAGE] = 1;
    residency("past the end", p + 2 * PAGE, 2);
    unsigned long a = (unsigned long)p;
    printf("mincore misaligned = %s\n", errname(-mincore_raw(a + 1, PAGE, vec)));
    printf("mincore misaligned, length 0 = %s\n", errname(-mincore_raw(a + 1, 0, vec)));
    printf("mincore length 0 = %ld\n", mincore_raw(a, 0, vec));
    printf("mincore length 0, kernel vector = %s\n", errname(-mincore_raw(a, 0, (void *)-PAGE)));
    printf("mincore length 0, unmapped = %ld\n", mincore_raw(0x10000, 0, vec));
    printf("mincore beyond user space = %s\n", errname(-mincore_raw(TASK_SIZE, PAGE, vec)));
    printf("mincore at 2^47 = %s\n", errname(-mincore_raw(1UL << 47, PAGE, vec)));
    printf("mincore kernel address = %s\n", errname(-mincore_raw(-PAGE, PAGE, vec)));
    printf("mincore length wraps = %s\n", errname(-mincore_raw(a, -PAGE, vec)));
    printf("mincore unmapped = %s\n", errname(-mincore_raw(0x10000, PAGE, vec)));
    printf("mincore unmapped, NULL vector = %s\n", errname(-mincore_raw(0x10000, PAGE, NULL)));
    printf("mincore unmapped, kernel vector = %s\n", errname(-mincore_raw(0x10000, PAGE, (void *)-PAGE)));
    printf("mincore mapped, NULL vector = %s\n", errname(-mincore_raw(a, PAGE, NULL)));
    printf("mincore mapped, vector at 2^47 - 1 = %s\n", errname(-mincore_raw(a, 2 * PAGE, (void *)((1UL << 47) - 1))));
    char *ro = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("mincore read-only vector = %s\n", errname(-mincore_raw(a, PAGE, ro)));
    memset(vec, 0xee, sizeof vec);
    long r = mincore_raw(a, 1, vec);
    printf("mincore 1 byte = %ld, vec %d %d\n", r, vec[0], vec[1]);
    memset(vec, 0xee, sizeof vec);
    r = mincore_raw(a, 2 * PAGE + 1, vec);
    printf("mincore 2 pages + 1 byte = %ld, vec %d %d %d %d\n", r, vec[0], vec[1], vec[2], vec[3]);
    munmap(p + PAGE, PAGE);
    residency("hole in the middle", p, 3);
    p[0] = 1;
    show("mprotect PROT_NONE", mprotect(p, PAGE, PROT_NONE));
    residency("PROT_NONE, written before", p, 1);
    /* A vector whose second byte lies in a hole after a writable page. */
    char *w = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(w + PAGE, PAGE);
    w[PAGE - 2] = 0x11;
    w[PAGE - 1] = 0x11;
    char *two = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    two[0] = 1;
    r = mincore_raw((unsigned long)two, 2 * PAGE, w + PAGE - 1);
    printf("mincore vector running into a hole = %s, its first byte %d\n", r ? errname((int)-r) : "0", w[PAGE - 1]);
    munmap(two, 2 * PAGE);
    int fd = open("/etc/passwd", O_RDONLY);
    char *f = mmap(NULL, 2 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
    residency("file, untouched (the file has one page)", f, 2);
    volatile char c = f[0];
    (void)c;
    residency("file, read", f, 2);
    munmap(f, 2 * PAGE);
    close(fd);
    munmap(p, 3 * PAGE);
    munmap(w, PAGE);
    munmap(ro, PAGE);
}

static void fixed_noreplace(void) {
    char *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(p + 2 * PAGE, 2 * PAGE);
    p[0] = 'k';
    char *q = mmap(p + 2 * PAGE, 2 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    printf("NOREPLACE into the free tail: %s\n", q == MAP_FAILED ? errname(errno) : q == p + 2 * PAGE ? "at the hint" : "elsewhere");
    q = mmap(p, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    printf("NOREPLACE over a mapping: %s\n", q == MAP_FAILED ? errname(errno) : "mapped");
    munmap(p + 2 * PAGE, 2 * PAGE);
    q = mmap(p + PAGE, 2 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    printf("NOREPLACE overlapping one page: %s; the old page still holds '%c'\n", q == MAP_FAILED ? errname(errno) : "mapped", p[0]);
    q = mmap(p + 2 * PAGE + 1, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (q == MAP_FAILED) printf("NOREPLACE at an unaligned hint: %s\n", errname(errno));
    else printf("NOREPLACE at an unaligned hint: hint %+ld bytes\n", (long)(q - (p + 2 * PAGE + 1)));
    if (q != MAP_FAILED) munmap(q, PAGE);
    q = mmap(p + 3 * PAGE + 1, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (q == MAP_FAILED) printf("NOREPLACE at an unaligned hint next to nothing: %s\n", errname(errno));
    else printf("NOREPLACE at an unaligned hint next to nothing: hint %+ld bytes\n", (long)(q - (p + 3 * PAGE + 1)));
    if (q != MAP_FAILED) munmap(q, PAGE);
    q = mmap(p + PAGE + 1, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (q == MAP_FAILED) printf("NOREPLACE at an unaligned hint inside a mapping: %s\n", errname(errno));
    else printf("NOREPLACE at an unaligned hint inside a mapping: hint %+ld bytes\n", (long)(q - (p + PAGE + 1)));
    q = mmap((void *)(TASK_SIZE - PAGE), 2 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    printf("NOREPLACE past the top of user space: %s\n", q == MAP_FAILED ? errname(errno) : "mapped");
    q = mmap((void *)0x10000, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    printf("NOREPLACE at 64 KiB: %s\n", q == MAP_FAILED ? errname(errno) : q == (void *)0x10000 ? "at the hint" : "elsewhere");
    if (q != MAP_FAILED) munmap(q, PAGE);
    q = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    printf("NOREPLACE at NULL: %s\n", q == MAP_FAILED ? errname(errno) : q == NULL ? "at the hint" : "elsewhere");
    if (q != MAP_FAILED) munmap(q, PAGE);
    munmap(p, 4 * PAGE);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    mount_proc_if_absent();
    zero_page();
    shared_anonymous();
    mincore_checks();
    fixed_noreplace();
    return 0;
}
