/* NUMA memory policy as Linux defines it (issue #17): get_mempolicy(239) with every flag
 * combination, maxnode boundary and bad pointer; set_mempolicy(238) modes and mode flags;
 * mbind(237) splitting and merging an area, MPOL_MF_STRICT and MPOL_MF_MOVE; where pages land
 * under each policy (pinned first); move_pages(279), migrate_pages(256),
 * set_mempolicy_home_node(450); a page whose key PKRU denies; fork and exec keeping policies.
 * Run on 1, 2 and 4 nodes (one CPU per node). Every line is a result, an errno, a mask or a
 * node list — addresses never appear, so the transcripts of two kernels can be compared. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "pikku_user.h"
#include "pikku_smp.h"

#ifndef SYS_set_mempolicy_home_node
#define SYS_set_mempolicy_home_node 450
#endif

enum { DEFAULT, PREFERRED, BIND, INTERLEAVE, LOCAL, PREFERRED_MANY, WEIGHTED_INTERLEAVE };
#define F_STATIC (1 << 15)
#define F_RELATIVE (1 << 14)
#define F_BALANCING (1 << 13)
#define F_NODE 1ul
#define F_ADDR 2ul
#define F_MEMS 4ul
#define MF_STRICT 1u
#define MF_MOVE 2u
#define MF_MOVE_ALL 4u
#define PAGE 4096ul

static long getmp(int *mode, void *mask, unsigned long maxnode, void *addr, unsigned long flags) {
    return syscall(SYS_get_mempolicy, mode, mask, maxnode, addr, flags);
}
static long setmp(unsigned long mode, const void *mask, unsigned long maxnode) {
    return syscall(SYS_set_mempolicy, mode, mask, maxnode);
}
static long mbind_(void *addr, unsigned long len, unsigned long mode, const void *mask, unsigned long maxnode, unsigned long flags) {
    return syscall(SYS_mbind, addr, len, mode, mask, maxnode, flags);
}

static const char *ename(int e) {
    if (e == EOPNOTSUPP) return "EOPNOTSUPP";
    return errname(e);
}

/* "= 0" / "= -1 EINVAL". */
static void res(const char *what, long r) {
    int e = errno;
    if (r < 0) printf("%s = -1 %s\n", what, ename(e));
    else printf("%s = %ld\n", what, r);
}

static const char *mode_name(int m) {
    static const char *names[] = {"DEFAULT", "PREFERRED", "BIND", "INTERLEAVE", "LOCAL", "PREFERRED_MANY", "WEIGHTED_INTERLEAVE"};
    static char other[32];
    int base = m & ~(F_STATIC | F_RELATIVE | F_BALANCING);
    if (base < 0 || base > 6) {
        snprintf(other, sizeof other, "mode%d", m);
        return other;
    }
    snprintf(other, sizeof other, "%s%s%s%s", names[base], m & F_STATIC ? "|STATIC" : "", m & F_RELATIVE ? "|RELATIVE" : "",
             m & F_BALANCING ? "|NUMA_BALANCING" : "");
    return other;
}

static unsigned long online;   /* the nodes with memory (MPOL_F_MEMS_ALLOWED) */
static int nnodes, last;       /* how many, and the highest */
static int zero_node = -1;     /* where an untouched page reads from (Linux: its zero page) */
static unsigned char *buf;     /* two pages for masks, filled with 0xAA before each call */
static unsigned char *edge;    /* a writable page followed by an unmapped one */

/* How many bytes from the start of buf were written: one past the last byte that is no longer
 * 0xAA (masks of up to 4 nodes never contain a 0xAA byte). */
static long written(void) {
    long n = 0;
    for (long i = 0; i < 2 * (long)PAGE; i++)
        if (buf[i] != 0xAA) n = i + 1;
    return n;
}

/* The thread's policy as "MODE nodes=0x…". */
static void show_policy(const char *label) {
    int mode = -7;
    unsigned long mask[16] = {0};
    long r = getmp(&mode, mask, 1024, 0, 0);
    if (r < 0) printf("%s: get_mempolicy = -1 %s\n", label, ename(errno));
    else printf("%s: %s nodes=0x%lx\n", label, mode_name(mode), mask[0]);
}

/* get_mempolicy with policy and nmask pointing into buf (or the pointers given): result, what
 * landed in *policy, how many mask bytes were written and the first mask word. */
static void get_case(const char *label, unsigned long maxnode, void *addr, unsigned long flags) {
    memset(buf, 0xAA, 2 * PAGE);
    int mode = -7;
    long r = getmp(&mode, buf, maxnode, addr, flags);
    int e = errno;
    unsigned long w0;
    memcpy(&w0, buf, sizeof w0);
    if (r < 0) printf("get_mempolicy(%s) = -1 %s, policy %s, mask bytes written %ld\n", label, ename(e), mode == -7 ? "untouched" : "written", written());
    else printf("get_mempolicy(%s) = %ld, policy %d, mask bytes written %ld, first word 0x%lx\n", label, r, mode, written(), written() ? w0 : 0);
}

static void set_case(const char *label, unsigned long mode, unsigned long mask, unsigned long maxnode) {
    long r = setmp(mode, &mask, maxnode);
    int e = errno;
    if (r < 0) printf("set_mempolicy(%s) = -1 %s\n", label, ename(e));
    else {
        printf("set_mempolicy(%s) = 0\n", label);
        show_policy("  now");
    }
    setmp(DEFAULT, 0, 0);
}

/* The node of the page at p, or "E<name>". */
static void node_of(char *out, void *p) {
    int node = -1;
    long r = getmp(&node, 0, 0, p, F_NODE | F_ADDR);
    if (r < 0) sprintf(out, "%s", ename(errno));
    else sprintf(out, "%d", node);
}

/* For a page never written: "zero page" if it reports the node an untouched page of another
 * area reported (Linux maps one shared zero page for reads, wherever the kernel image put it —
 * a node that depends on the kernel's load address, so it is never printed), else "own node N". */
static void untouched_node(char *out, void *p) {
    int node = -1;
    long r = getmp(&node, 0, 0, p, F_NODE | F_ADDR);
    if (r < 0) sprintf(out, "%s", ename(errno));
    else if (node == zero_node) sprintf(out, "the zero page's node");
    else sprintf(out, "own node %d", node);
}

/* The nodes of n pages from p, as digits ("0101"); '?' for a page that failed. */
static void nodes_of(char *out, char *p, int n) {
    for (int i = 0; i < n; i++) {
        int node = -1;
        out[i] = getmp(&node, 0, 0, p + i * PAGE, F_NODE | F_ADDR) == 0 ? (char)('0' + node) : '?';
    }
    out[n] = 0;
}

/* A fresh private anonymous area of n pages with unmapped pages on both sides (so it merges
 * with nothing). */
static char *fresh(int n) {
    char *p = mmap(0, (n + 2) * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(p, PAGE);
    munmap(p + (n + 1) * PAGE, PAGE);
    return p + PAGE;
}

static void touch(char *p, int n) {
    for (int i = 0; i < n; i++) p[i * PAGE] = 1;
}

static char text[1 << 16];

/* How many /proc/self/maps lines lie within [p, p + n pages). */
static int maps_lines(char *p, int n) {
    int fd = open("/proc/self/maps", O_RDONLY);
    long len = 0, r;
    if (fd < 0) return -1;
    while ((r = read(fd, text + len, sizeof text - 1 - len)) > 0) len += r;
    close(fd);
    text[len] = 0;
    int count = 0;
    unsigned long lo = (unsigned long)p, hi = lo + n * PAGE;
    for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : 0) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s >= lo && e <= hi) count++;
    }
    return count;
}

/* The area's policy page by page (get_mempolicy with MPOL_F_ADDR). */
static void area_modes(const char *label, char *p, int n) {
    printf("%s: maps lines %d, modes", label, maps_lines(p, n));
    for (int i = 0; i < n; i++) {
        int mode = -7;
        unsigned long mask = 0;
        if (getmp(&mode, &mask, 64, p + i * PAGE, F_ADDR) < 0) printf(" %s", ename(errno));
        else printf(" %s/0x%lx", mode_name(mode), mask);
    }
    printf("\n");
}

/* Under a thread policy set for the occasion, touches 8 pages of a fresh area on CPU `cpu`
 * and prints their nodes. */
static void place(const char *label, unsigned long mode, unsigned long mask, int cpu) {
    pin_to(cpu);
    long r = setmp(mode, &mask, 64);
    char *p = fresh(8);
    touch(p, 8);
    char nodes[16];
    nodes_of(nodes, p, 8);
    if (r < 0) printf("placement %s on cpu %d: set_mempolicy = -1 %s\n", label, cpu, ename(errno));
    else printf("placement %s on cpu %d: %s\n", label, cpu, nodes);
    setmp(DEFAULT, 0, 0);
    munmap(p, 8 * PAGE);
}

/* Does every page of p lie on the node interleave picks for it: the (addr >> 12) % count-th
 * node of mask (Linux: interleave_nid() with the page's index)? Prints the verdict and how many
 * pages each node got. */
static void interleave_check(const char *label, char *p, int n, unsigned long mask) {
    int count = __builtin_popcountl(mask), ok = 1, per[64] = {0};
    for (int i = 0; i < n; i++) {
        int node = -1;
        getmp(&node, 0, 0, p + i * PAGE, F_NODE | F_ADDR);
        unsigned long idx = ((unsigned long)(p + i * PAGE) >> 12) % count, m = mask;
        for (unsigned long k = 0; k < idx; k++) m &= m - 1;
        if (node != __builtin_ctzl(m)) ok = 0;
        if (node >= 0 && node < 64) per[node]++;
    }
    printf("%s: every page on the (addr>>12 %% %d)-th node of 0x%lx: %s; pages per node:", label, count, mask, ok ? "yes" : "no");
    for (int k = 0; k <= last; k++) printf(" %d", per[k]);
    printf("\n");
}

static void section_get(void) {
    printf("-- get_mempolicy: maxnode\n");
    unsigned long maxnodes[] = {0, 1, 2, 3, 4, 5, 63, 64, 65, 66, 128, 129, 1024, 1025, 32768, 32769, 32770, 32833,
                                ~0ul, ~0ul - 1, ~0ul - 61, ~0ul - 62, ~0ul - 63, 1ul << 63};
    for (unsigned i = 0; i < sizeof maxnodes / sizeof *maxnodes; i++) {
        char label[64];
        snprintf(label, sizeof label, "maxnode %lu", maxnodes[i]);
        get_case(label, maxnodes[i], 0, 0);
    }
    printf("-- get_mempolicy: flags\n");
    char *p = fresh(2);
    get_case("flags 8", 64, 0, 8);
    get_case("flags 0x80000000", 64, 0, 1ul << 31);
    get_case("MEMS_ALLOWED", 64, 0, F_MEMS);
    get_case("MEMS_ALLOWED, addr 0x1234", 64, (void *)0x1234, F_MEMS);
    get_case("MEMS_ALLOWED|NODE", 64, 0, F_MEMS | F_NODE);
    get_case("MEMS_ALLOWED|ADDR", 64, p, F_MEMS | F_ADDR);
    get_case("MEMS_ALLOWED|NODE|ADDR", 64, p, F_MEMS | F_NODE | F_ADDR);
    get_case("0, addr mapped", 64, p, 0);
    get_case("NODE", 64, 0, F_NODE);
    get_case("NODE, addr mapped", 64, p, F_NODE);
    get_case("ADDR, addr 0", 64, 0, F_ADDR);
    get_case("ADDR, unmapped addr", 64, p - PAGE, F_ADDR);
    get_case("ADDR, kernel addr", 64, (void *)0xffff800000000000ul, F_ADDR);
    get_case("ADDR, mapped", 64, p, F_ADDR);
    get_case("ADDR, mapped, unaligned", 64, p + 123, F_ADDR);
    {
        char where[32];
        untouched_node(where, p);
        printf("get_mempolicy(NODE|ADDR, untouched page): %s\n", where);
    }
    p[PAGE] = 1;
    get_case("NODE|ADDR, touched page", 64, p + PAGE, F_NODE | F_ADDR);
    get_case("NODE|ADDR, unmapped addr", 64, p - PAGE, F_NODE | F_ADDR);
    get_case("flags 8, unmapped addr", 64, p - PAGE, F_ADDR | 8);
    get_case("maxnode 0, NODE|ADDR, unmapped addr", 0, p - PAGE, F_NODE | F_ADDR);
    {
        int mode = -7;
        res("get_mempolicy(&mode, NULL, 0, 0, 0)", getmp(&mode, 0, 0, 0, 0));
        printf("  mode %d\n", mode);
        res("get_mempolicy(NULL, NULL, 0, 0, 0)", getmp(0, 0, 0, 0, 0));
        res("get_mempolicy(NULL, NULL, 0, unmapped, ADDR)", getmp(0, 0, 0, p - PAGE, F_ADDR));
    }
    printf("-- get_mempolicy: bad pointers\n");
    {
        memset(buf, 0xAA, 2 * PAGE);
        long r = getmp((int *)8, buf, 64, 0, 0);
        int e = errno;
        printf("policy 0x8: %ld %s, mask bytes written %ld\n", r, r < 0 ? ename(e) : "", written());
        int mode = -7;
        r = getmp(&mode, (void *)8, 64, 0, 0);
        e = errno;
        printf("nmask 0x8, maxnode 64: %ld %s, policy %s\n", r, r < 0 ? ename(e) : "", mode == -7 ? "untouched" : "written");
        mode = -7;
        r = getmp(&mode, (void *)8, 1, 0, 0);
        e = errno;
        printf("nmask 0x8, maxnode 1: %ld %s, policy %s\n", r, r < 0 ? ename(e) : "", mode == -7 ? "untouched" : "written");
        mode = -7;
        r = getmp(&mode, buf, 32770, 0, 0);
        e = errno;
        printf("maxnode 32770: %ld %s, policy %s\n", r, r < 0 ? ename(e) : "", mode == -7 ? "untouched" : "written");
        /* A mask whose zero-filled tail runs off the end of the mapped memory. */
        unsigned long cuts[] = {16, 8, 4};
        unsigned long maxn[] = {1024, 1024, 64};
        for (int i = 0; i < 3; i++) {
            unsigned char *m = edge + PAGE - cuts[i];
            memset(edge, 0xAA, PAGE);
            mode = -7;
            r = getmp(&mode, m, maxn[i], 0, F_MEMS);
            e = errno;
            printf("nmask %lu bytes before an unmapped page, maxnode %lu: %ld %s, policy %s, bytes:", cuts[i], maxn[i], r, r < 0 ? ename(e) : "",
                   mode == -7 ? "untouched" : "written");
            for (unsigned long k = 0; k < cuts[i]; k++) printf(" %02x", m[k]);
            printf("\n");
        }
    }
    munmap(p, 2 * PAGE);
}

static void section_set(void) {
    printf("-- set_mempolicy\n");
    unsigned long all = online, first = online & -online, top = 1ul << last;
    set_case("DEFAULT, empty", DEFAULT, 0, 64);
    set_case("DEFAULT, {0}", DEFAULT, 1, 64);
    set_case("DEFAULT|STATIC, empty", DEFAULT | F_STATIC, 0, 64);
    set_case("PREFERRED, {0}", PREFERRED, 1, 64);
    set_case("PREFERRED, all", PREFERRED, all, 64);
    set_case("PREFERRED, {last}", PREFERRED, top, 64);
    set_case("PREFERRED, empty", PREFERRED, 0, 64);
    set_case("PREFERRED|STATIC, empty", PREFERRED | F_STATIC, 0, 64);
    set_case("PREFERRED|RELATIVE, empty", PREFERRED | F_RELATIVE, 0, 64);
    set_case("PREFERRED|STATIC, {last}", PREFERRED | F_STATIC, top, 64);
    set_case("BIND, all", BIND, all, 64);
    set_case("BIND, empty", BIND, 0, 64);
    set_case("BIND, {5}", BIND, 1ul << 5, 64);
    set_case("BIND, {0,5}", BIND, 1 | 1ul << 5, 64);
    set_case("BIND, {63}", BIND, 1ul << 63, 64);
    set_case("BIND|STATIC, {0,5}", BIND | F_STATIC, 1 | 1ul << 5, 64);
    set_case("BIND|STATIC, {5}", BIND | F_STATIC, 1ul << 5, 64);
    set_case("BIND|RELATIVE, {1}", BIND | F_RELATIVE, 1ul << 1, 64);
    set_case("BIND|RELATIVE, {5}", BIND | F_RELATIVE, 1ul << 5, 64);
    set_case("BIND|RELATIVE, {0,2,5}", BIND | F_RELATIVE, 1 | 4 | 1ul << 5, 64);
    set_case("BIND|STATIC|RELATIVE, {0}", BIND | F_STATIC | F_RELATIVE, 1, 64);
    set_case("BIND|NUMA_BALANCING, all", BIND | F_BALANCING, all, 64);
    set_case("PREFERRED_MANY|NUMA_BALANCING, all", PREFERRED_MANY | F_BALANCING, all, 64);
    set_case("INTERLEAVE|NUMA_BALANCING, all", INTERLEAVE | F_BALANCING, all, 64);
    set_case("PREFERRED|NUMA_BALANCING, {0}", PREFERRED | F_BALANCING, 1, 64);
    set_case("INTERLEAVE, all", INTERLEAVE, all, 64);
    set_case("INTERLEAVE|STATIC, all", INTERLEAVE | F_STATIC, all, 64);
    set_case("LOCAL, empty", LOCAL, 0, 64);
    set_case("LOCAL, {0}", LOCAL, 1, 64);
    set_case("LOCAL|STATIC, empty", LOCAL | F_STATIC, 0, 64);
    set_case("PREFERRED_MANY, all", PREFERRED_MANY, all, 64);
    set_case("PREFERRED_MANY, empty", PREFERRED_MANY, 0, 64);
    set_case("WEIGHTED_INTERLEAVE, all", WEIGHTED_INTERLEAVE, all, 64);
    set_case("mode 7", 7, 1, 64);
    set_case("mode -1", ~0ul, 1, 64);
    set_case("mode 0x10000|BIND", 0x10000 | BIND, 1, 64);
    set_case("mode 0x100000002 (int: BIND)", 0x100000002ul, 1, 64);
    set_case("BIND, {0}, maxnode 0", BIND, 1, 0);
    set_case("BIND, {0}, maxnode 1", BIND, 1, 1);
    set_case("BIND, {0}, maxnode 2", BIND, 1, 2);
    set_case("BIND, {0,1}, maxnode 2", BIND, 3, 2);
    set_case("BIND, {1}, maxnode 2", BIND, 2, 2);
    set_case("BIND, {1}, maxnode 3", BIND, 2, 3);
    set_case("BIND, {0}, maxnode 65", BIND, 1, 65);
    {
        /* Masks longer than one word: bits between 64 and MAX_NUMNODES (1024) are allowed and
         * dropped; a bit at or above 1024 is EINVAL; maxnode - 1 above 32768 is EINVAL. */
        memset(buf, 0, 2 * PAGE);
        buf[0] = 1;
        buf[1023 / 8] |= 1 << (1023 % 8);
        res("set_mempolicy(BIND, {0,1023}, 1025)", setmp(BIND, buf, 1025));
        show_policy("  now");
        setmp(DEFAULT, 0, 0);
        buf[1024 / 8] |= 1 << (1024 % 8);
        res("set_mempolicy(BIND, {0,1023,1024}, 1025)", setmp(BIND, buf, 1025));
        res("set_mempolicy(BIND, {0,1023,1024}, 1026)", setmp(BIND, buf, 1026));
        memset(buf, 0, 2 * PAGE);
        buf[0] = 1;
        buf[4095] = 0x80;
        res("set_mempolicy(BIND, {0,32767}, 32768)", setmp(BIND, buf, 32768));
        res("set_mempolicy(BIND, {0,32767}, 32769)", setmp(BIND, buf, 32769));
        res("set_mempolicy(BIND, {0}, 32770)", setmp(BIND, buf, 32770));
        res("set_mempolicy(BIND, {0}, ~0)", setmp(BIND, buf, ~0ul));
        setmp(DEFAULT, 0, 0);
        res("set_mempolicy(BIND, 0x8, 64)", setmp(BIND, (void *)8, 64));
        res("set_mempolicy(BIND, NULL, 64)", setmp(BIND, 0, 64));
        res("set_mempolicy(DEFAULT, 0x8, 64)", setmp(DEFAULT, (void *)8, 64));
        res("set_mempolicy(DEFAULT, 0x8, 1)", setmp(DEFAULT, (void *)8, 1));
        res("set_mempolicy(mode 9, 0x8, 64)", setmp(9, (void *)8, 64));
        res("set_mempolicy(BIND, edge-4, 64)", setmp(BIND, edge + PAGE - 4, 64));
        setmp(DEFAULT, 0, 0);
    }
    printf("-- MPOL_F_NODE without MPOL_F_ADDR\n");
    unsigned long two = nnodes >= 2 ? (first | top) : first;
    int node = -1;
    setmp(INTERLEAVE, &two, 64);
    res("INTERLEAVE {first,last}: get_mempolicy(NODE)", getmp(&node, 0, 0, 0, F_NODE));
    printf("  node %d\n", node);
    setmp(WEIGHTED_INTERLEAVE, &two, 64);
    node = -1;
    res("WEIGHTED_INTERLEAVE {first,last}: get_mempolicy(NODE)", getmp(&node, 0, 0, 0, F_NODE));
    printf("  node %d\n", node);
    setmp(BIND, &all, 64);
    res("BIND: get_mempolicy(NODE)", getmp(&node, 0, 0, 0, F_NODE));
    setmp(DEFAULT, 0, 0);
}

static void section_mbind(void) {
    printf("-- mbind\n");
    unsigned long zero = 1, all = online, top = 1ul << last;
    char *p = fresh(4);
    area_modes("fresh area", p, 4);
    res("mbind(middle two pages, BIND, {0})", mbind_(p + PAGE, 2 * PAGE, BIND, &zero, 64, 0));
    area_modes("after", p, 4);
    res("mbind(first page, BIND, {0})", mbind_(p, PAGE, BIND, &zero, 64, 0));
    area_modes("after", p, 4);
    res("mbind(first three pages, DEFAULT)", mbind_(p, 3 * PAGE, DEFAULT, 0, 0, 0));
    area_modes("after", p, 4);
    res("mbind(last page, INTERLEAVE|STATIC, all)", mbind_(p + 3 * PAGE, PAGE, INTERLEAVE | F_STATIC, &all, 64, 0));
    area_modes("after", p, 4);
    res("mbind(all, PREFERRED, {last}), len 1", mbind_(p, 3 * PAGE + 1, PREFERRED, &top, 64, 0));
    area_modes("after", p, 4);
    res("mbind(all, LOCAL)", mbind_(p, 4 * PAGE, LOCAL, 0, 0, 0));
    area_modes("after", p, 4);
    res("mbind(all, DEFAULT)", mbind_(p, 4 * PAGE, DEFAULT, 0, 0, 0));
    area_modes("after", p, 4);
    printf("-- mbind: errors in Linux's order\n");
    res("mbind(unaligned, BIND, {0})", mbind_(p + 1, PAGE, BIND, &zero, 64, 0));
    res("mbind(len 0, BIND, {0})", mbind_(p, 0, BIND, &zero, 64, 0));
    res("mbind(len 0, unaligned, BIND, {0})", mbind_(p + 1, 0, BIND, &zero, 64, 0));
    res("mbind(len 0, BIND, empty)", mbind_(p, 0, BIND, 0, 0, 0));
    res("mbind(len 0, mode 7)", mbind_(p, 0, 7, &zero, 64, 0));
    res("mbind(len 0, flags 8)", mbind_(p, 0, BIND, &zero, 64, 8));
    res("mbind(flags 8, BIND, {0})", mbind_(p, PAGE, BIND, &zero, 64, 8));
    res("mbind(len -4096, BIND, {0})", mbind_(p, -PAGE, BIND, &zero, 64, 0));
    res("mbind(len -4095, BIND, {0})", mbind_(p, -PAGE + 1, BIND, &zero, 64, 0));
    res("mbind(unaligned, nmask 0x8)", mbind_(p + 1, PAGE, BIND, (void *)8, 64, 0));
    res("mbind(unaligned, mode 7)", mbind_(p + 1, PAGE, 7, &zero, 64, 0));
    res("mbind(hole before, BIND, {0})", mbind_(p - PAGE, 2 * PAGE, BIND, &zero, 64, 0));
    area_modes("  after", p, 4);
    res("mbind(hole after, BIND, {0})", mbind_(p + 3 * PAGE, 2 * PAGE, BIND, &zero, 64, 0));
    area_modes("  after", p, 4);
    res("mbind(only a hole, BIND, {0})", mbind_(p - PAGE, PAGE, BIND, &zero, 64, 0));
    res("mbind(only a hole, DEFAULT)", mbind_(p - PAGE, PAGE, DEFAULT, 0, 0, 0));
    res("mbind(hole before, DEFAULT)", mbind_(p - PAGE, 2 * PAGE, DEFAULT, 0, 0, 0));
    res("mbind(hole, BIND, empty)", mbind_(p - PAGE, PAGE, BIND, 0, 64, 0));
    res("mbind(kernel address, BIND, {0})", mbind_((void *)0xffff800000000000ul, PAGE, BIND, &zero, 64, 0));
    res("mbind(BIND, {5})", mbind_(p, PAGE, BIND, (unsigned long[]){1ul << 5}, 64, 0));
    res("mbind(MOVE_ALL, BIND, {0}) as root", mbind_(p, PAGE, BIND, &zero, 64, MF_MOVE_ALL));
    res("mbind(all, DEFAULT, STRICT)", mbind_(p, 4 * PAGE, DEFAULT, 0, 0, MF_STRICT));
    area_modes("  after", p, 4);
    munmap(p, 4 * PAGE);

    printf("-- mbind: STRICT and MOVE (pages first touched on cpu %d)\n", last);
    pin_to(last);
    p = fresh(4);
    touch(p, 4);
    char nodes[16];
    nodes_of(nodes, p, 4);
    printf("touched: %s\n", nodes);
    res("mbind(BIND, {0}, STRICT)", mbind_(p, 4 * PAGE, BIND, &zero, 64, MF_STRICT));
    area_modes("  after", p, 4);
    nodes_of(nodes, p, 4);
    printf("  nodes %s\n", nodes);
    res("mbind(BIND, {0}, STRICT|MOVE)", mbind_(p, 2 * PAGE, BIND, &zero, 64, MF_STRICT | MF_MOVE));
    nodes_of(nodes, p, 4);
    printf("  nodes %s, data %d %d %d %d\n", nodes, p[0], p[PAGE], p[2 * PAGE], p[3 * PAGE]);
    res("mbind(BIND, {last}, MOVE_ALL)", mbind_(p, 4 * PAGE, BIND, &top, 64, MF_MOVE_ALL));
    nodes_of(nodes, p, 4);
    printf("  nodes %s\n", nodes);
    res("mbind(PREFERRED, {0}, MOVE) of pages on node last", mbind_(p, 4 * PAGE, PREFERRED, &zero, 64, MF_MOVE));
    nodes_of(nodes, p, 4);
    printf("  nodes %s\n", nodes);
    munmap(p, 4 * PAGE);
    /* Pages a forked child also maps are not moved by MPOL_MF_MOVE, and that is no failure. */
    p = fresh(2);
    touch(p, 2);
    int pipefd[2];
    pipe(pipefd);
    pid_t child = fork();
    if (child == 0) {
        char c;
        read(pipefd[0], &c, 1);
        _exit(0);
    }
    res("shared with a child: mbind(BIND, {0}, STRICT|MOVE)", mbind_(p, 2 * PAGE, BIND, &zero, 64, MF_STRICT | MF_MOVE));
    nodes_of(nodes, p, 2);
    printf("  nodes %s\n", nodes);
    write(pipefd[1], "x", 1);
    waitpid(child, 0, 0);
    close(pipefd[0]);
    close(pipefd[1]);
    munmap(p, 2 * PAGE);
    pin_to(0);
}

static void section_place(void) {
    printf("-- placement\n");
    unsigned long zero = 1, all = online, top = 1ul << last;
    place("default", DEFAULT, 0, last);
    place("default", DEFAULT, 0, 0);
    place("LOCAL", LOCAL, 0, last);
    place("BIND {0}", BIND, zero, last);
    place("BIND {last}", BIND, top, 0);
    place("PREFERRED {0}", PREFERRED, zero, last);
    place("PREFERRED {last}", PREFERRED, top, 0);
    place("PREFERRED_MANY {0}", PREFERRED_MANY, zero, last);
    place("BIND|STATIC {last}", BIND | F_STATIC, top, 0);
    place("BIND|RELATIVE {1}", BIND | F_RELATIVE, 2, 0);
    pin_to(0);
    char nodes[32];
    char *p = fresh(16);
    setmp(INTERLEAVE, &all, 64);
    touch(p, 16);
    setmp(DEFAULT, 0, 0);
    interleave_check("thread INTERLEAVE all", p, 16, all);
    munmap(p, 16 * PAGE);
    p = fresh(16);
    setmp(WEIGHTED_INTERLEAVE, &all, 64);
    touch(p, 16);
    setmp(DEFAULT, 0, 0);
    interleave_check("thread WEIGHTED_INTERLEAVE all", p, 16, all);
    munmap(p, 16 * PAGE);
    unsigned long odd = 0xa & all;
    p = fresh(16);
    long r = mbind_(p, 16 * PAGE, INTERLEAVE, &odd, 64, 0);
    printf("mbind(INTERLEAVE, {1,3} & online) = %ld\n", r);
    touch(p, 16);
    if (r == 0) interleave_check("area INTERLEAVE {1,3}", p, 16, odd);
    munmap(p, 16 * PAGE);
    /* The area's policy wins over the thread's. */
    p = fresh(4);
    mbind_(p, 4 * PAGE, PREFERRED, &zero, 64, 0);
    setmp(BIND, &top, 64);
    touch(p, 4);
    setmp(DEFAULT, 0, 0);
    nodes_of(nodes, p, 4);
    printf("area PREFERRED {0} under thread BIND {last}: %s\n", nodes);
    munmap(p, 4 * PAGE);
    /* Shared anonymous memory interleaves by the page's offset in the shared object. */
    p = mmap(0, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    res("shared anonymous: mbind(INTERLEAVE, all)", mbind_(p, 8 * PAGE, INTERLEAVE, &all, 64, 0));
    touch(p, 8);
    nodes_of(nodes, p, 8);
    /* Linux starts the cycle at the shared object's inode number (shmem_get_pgoff_policy()),
     * which is not predictable: the check is that page i is on the i-th node after page 0's. */
    int consecutive = 1, start = 0;
    {
        unsigned long m = online;
        int pos = 0;
        for (int k = 0; k < nodes[0] - '0'; k++)
            if (m & (1ul << k)) pos++;
        start = pos;
    }
    for (int i = 0; i < 8; i++) {
        unsigned long m = online;
        for (int k = 0; k < (start + i) % nnodes; k++) m &= m - 1;
        if (nodes[i] - '0' != __builtin_ctzl(m)) consecutive = 0;
    }
    printf("  page i on the i-th node after page 0's, cyclically: %s\n", consecutive ? "yes" : "no");
    munmap(p, 8 * PAGE);
    /* Untouched pages: a read maps Linux's shared zero page, on its node whatever the policy. */
    pin_to(last);
    p = fresh(2);
    mbind_(p, 2 * PAGE, BIND, &top, 64, 0);
    char node[32];
    untouched_node(node, p);
    printf("untouched page of an area bound to {last}: %s\n", node);
    volatile char c = p[PAGE];
    (void)c;
    untouched_node(node, p + PAGE);
    printf("  after a read of the second page: %s\n", node);
    p[PAGE] = 1;
    node_of(node, p + PAGE);
    printf("  after a write: node %s\n", node);
    munmap(p, 2 * PAGE);
    pin_to(0);
}

static void section_calls(void) {
    printf("-- move_pages, migrate_pages, set_mempolicy_home_node\n");
    unsigned long zero = 1, all = online, top = 1ul << last;
    pin_to(last);
    long r;
    char *p = fresh(3);
    p[0] = 1;
    p[2 * PAGE] = 1;
    void *pages[4] = {p, p + PAGE, p - PAGE, p + 2 * PAGE};
    int status[4] = {-99, -99, -99, -99};
    res("move_pages(0, 4, [touched, untouched, unmapped, touched], NULL, status, 0)", syscall(SYS_move_pages, 0, 4, pages, 0, status, 0));
    printf("  status %d %d %d %d\n", status[0], status[1], status[2], status[3]);
    int to[4] = {0, 0, 0, 0};
    res("move_pages(… nodes all 0 …, MOVE)", syscall(SYS_move_pages, 0, 4, pages, to, status, MF_MOVE));
    printf("  status %d %d %d %d\n", status[0], status[1], status[2], status[3]);
    res("move_pages(query again)", syscall(SYS_move_pages, 0, 4, pages, 0, status, 0));
    printf("  status %d %d %d %d\n", status[0], status[1], status[2], status[3]);
    res("move_pages(count 0)", syscall(SYS_move_pages, 0, 0, pages, 0, status, 0));
    res("move_pages(flags 8)", syscall(SYS_move_pages, 0, 1, pages, 0, status, 8));
    res("move_pages(pid 999999)", syscall(SYS_move_pages, 999999, 1, pages, 0, status, 0));
    int bad[1] = {5};
    res("move_pages(node 5)", syscall(SYS_move_pages, 0, 1, pages, bad, status, 0));
    bad[0] = -1;
    res("move_pages(node -1)", syscall(SYS_move_pages, 0, 1, pages, bad, status, 0));
    res("move_pages(pages 0x8)", syscall(SYS_move_pages, 0, 1, (void *)8, 0, status, 0));
    res("move_pages(status 0x8)", syscall(SYS_move_pages, 0, 1, pages, 0, (void *)8, 0));
    pages[0] = p + 1;
    res("move_pages(unaligned address)", syscall(SYS_move_pages, 0, 1, pages, 0, status, 0));
    printf("  status %d\n", status[0]);

    p[PAGE] = 1;
    /* migrate_pages moves every page of the process, the program's own included; how many
     * could not move depends on the kernel, so only "0 or more" is shown. */
    r = syscall(SYS_migrate_pages, 0, 64, &top, &zero);
    printf("migrate_pages(0, 64, {last}, {0}) %s\n", r >= 0 ? ">= 0" : ename(errno));
    char nodes[8];
    nodes_of(nodes, p, 3);
    printf("  nodes %s\n", nodes);
    r = syscall(SYS_migrate_pages, 0, 64, &zero, &top);
    printf("migrate_pages(0, 64, {0}, {last}) %s\n", r >= 0 ? ">= 0" : ename(errno));
    nodes_of(nodes, p, 3);
    printf("  nodes %s\n", nodes);
    res("migrate_pages(0, 64, {5}, {0})", syscall(SYS_migrate_pages, 0, 64, (unsigned long[]){1ul << 5}, &zero));
    res("migrate_pages(0, 64, {0}, {5})", syscall(SYS_migrate_pages, 0, 64, &zero, (unsigned long[]){1ul << 5}));
    res("migrate_pages(0, 0, {0}, {0})", syscall(SYS_migrate_pages, 0, 0, &zero, &zero));
    res("migrate_pages(999999, …)", syscall(SYS_migrate_pages, 999999, 64, &zero, &zero));
    res("migrate_pages(0, 64, 0x8, {0})", syscall(SYS_migrate_pages, 0, 64, (void *)8, &zero));
    munmap(p, 3 * PAGE);

    pin_to(0);
    p = fresh(4);
    res("set_mempolicy_home_node(flags 1)", syscall(SYS_set_mempolicy_home_node, p, 4 * PAGE, 0, 1));
    res("set_mempolicy_home_node(unaligned)", syscall(SYS_set_mempolicy_home_node, p + 1, 4 * PAGE, 0, 0));
    res("set_mempolicy_home_node(node 5)", syscall(SYS_set_mempolicy_home_node, p, 4 * PAGE, 5, 0));
    res("set_mempolicy_home_node(node 1024)", syscall(SYS_set_mempolicy_home_node, p, 4 * PAGE, 1024, 0));
    res("set_mempolicy_home_node(len 0)", syscall(SYS_set_mempolicy_home_node, p, 0, 0, 0));
    res("set_mempolicy_home_node(no policy)", syscall(SYS_set_mempolicy_home_node, p, 4 * PAGE, last, 0));
    res("set_mempolicy_home_node(hole)", syscall(SYS_set_mempolicy_home_node, p - PAGE, 2 * PAGE, last, 0));
    mbind_(p, 2 * PAGE, INTERLEAVE, &all, 64, 0);
    res("set_mempolicy_home_node(INTERLEAVE area)", syscall(SYS_set_mempolicy_home_node, p, 4 * PAGE, last, 0));
    mbind_(p, 4 * PAGE, BIND, &all, 64, 0);
    res("set_mempolicy_home_node(BIND all, last)", syscall(SYS_set_mempolicy_home_node, p, 4 * PAGE, last, 0));
    area_modes("  after", p, 4);
    touch(p, 4);
    nodes_of(nodes, p, 4);
    printf("  touched on cpu 0: nodes %s\n", nodes);
    munmap(p, 4 * PAGE);
}

static void section_keys(void) {
    printf("-- a page whose key PKRU denies\n");
    char *p = fresh(3);
    p[0] = 1;
    long key = pk_alloc(0, 0);
    printf("pkey_alloc = %ld\n", key);
    if (key <= 0) return;
    pk_mprotect(p, 3 * PAGE, PROT_READ | PROT_WRITE, key);
    uint32_t open = rdpkru();
    char a[32], b[32], c[32];
    wrpkru(open | (1u << (2 * key)));
    node_of(a, p);
    node_of(b, p + PAGE);
    int mode = -7;
    long r = getmp(&mode, 0, 0, p, F_ADDR);
    wrpkru(open);
    printf("access-disabled: touched page %s, untouched page %s; ADDR alone = %ld (mode %d)\n", a, b, r, mode);
    wrpkru(open | (2u << (2 * key)));
    node_of(a, p);
    untouched_node(b, p + PAGE);
    wrpkru(open);
    printf("write-disabled: touched page %s, untouched page %s\n", a, b);
    node_of(a, p);
    untouched_node(b, p + PAGE);
    printf("key open again: touched page %s, untouched page %s\n", a, b);
    mprotect(p + 2 * PAGE, PAGE, PROT_NONE);
    node_of(c, p + 2 * PAGE);
    printf("PROT_NONE page: %s\n", c);
    munmap(p, 3 * PAGE);
    pk_free(key);
}

static void section_inherit(char *argv0) {
    printf("-- fork and exec\n");
    unsigned long all = online, zero = 1;
    char *p = fresh(2);
    mbind_(p, PAGE, BIND, &zero, 64, 0);
    setmp(INTERLEAVE | F_STATIC, &all, 64);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        show_policy("child's thread policy");
        area_modes("child's area", p, 2);
        fflush(stdout);
        execve(argv0, (char *[]){argv0, "after-exec", 0}, (char *[]){0});
        printf("execve failed: %s\n", ename(errno));
        _exit(1);
    }
    int st = 0;
    waitpid(child, &st, 0);
    printf("child exited with %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    setmp(DEFAULT, 0, 0);
    show_policy("parent after reset");
    munmap(p, 2 * PAGE);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "after-exec") == 0) {
        show_policy("after exec");
        return 0;
    }
    smp_program_begin("mempolicy", 60);
    int probe = open("/proc/self/maps", O_RDONLY);
    if (probe >= 0) close(probe);
    else {
        mkdir("/proc", 0555);
        mount("proc", "/proc", "proc", 0, NULL);
    }
    buf = mmap(0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    edge = (unsigned char *)fresh(1);
    int mode;
    long r = getmp(&mode, &online, 64, 0, F_MEMS);
    if (r < 0 || online == 0) {
        printf("get_mempolicy(MEMS_ALLOWED) = -1 %s: no NUMA policy here\n", ename(errno));
        return 1;
    }
    nnodes = __builtin_popcountl(online);
    last = 63 - __builtin_clzl(online);
    printf("nodes with memory: 0x%lx (%d), cpus: %d\n", online, nnodes, allowed_cpus());
    pin_to(0);
    char *z = fresh(1);
    getmp(&zero_node, 0, 0, z, F_NODE | F_ADDR);
    section_get();
    section_set();
    section_mbind();
    section_place();
    section_calls();
    section_keys();
    section_inherit(argv[0]);
    return 0;
}
