/* pikku's NUMA demo (`make run NUMA=2` or `NUMA=4`): memory policies at work, one step at a
 * time. Each step maps 8 fresh pages, writes to them, and asks get_mempolicy(MPOL_F_NODE |
 * MPOL_F_ADDR) on which node each page landed — printed as one digit per page. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "pikku_user.h"
#include "pikku_smp.h"

#define PAGE 4096ul
#define PAGES 8
enum { DEFAULT, PREFERRED, BIND, INTERLEAVE, LOCAL, PREFERRED_MANY, WEIGHTED_INTERLEAVE };

static long getmp(int *mode, void *mask, unsigned long maxnode, void *addr, unsigned long flags) {
    return syscall(SYS_get_mempolicy, mode, mask, maxnode, addr, flags);
}
static long setmp(int mode, unsigned long mask) { return syscall(SYS_set_mempolicy, mode, &mask, 64); }

/* Writes to each of the 8 pages at p (if `touch`) and prints the node each one is on. */
static void show(char *p, int touch) {
    char nodes[PAGES + 1];
    for (int i = 0; i < PAGES; i++) {
        if (touch) p[i * PAGE] = 1;
        int node = -1;
        nodes[i] = getmp(&node, 0, 0, p + i * PAGE, 3) == 0 ? (char)('0' + node) : '?';
    }
    nodes[PAGES] = 0;
    printf("   pages on nodes: %s\n", nodes);
}

static char *fresh(void) { return mmap(0, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); }

/* Maps 8 fresh pages, touches them and reports where they landed. */
static void touch_and_show(void) { show(fresh(), 1); }

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    smp_program_begin("numa_demo", 60);
    unsigned long online = 0;
    int mode;
    if (getmp(&mode, &online, 64, 0, 4) != 0) {
        printf("get_mempolicy: %s - this kernel has no NUMA policy\n", errname(errno));
        return 1;
    }
    int last = 63 - __builtin_clzl(online);
    printf("\npikku NUMA demo: where pages land, step by step\n");
    printf("0. This machine has nodes 0x%lx (get_mempolicy(MPOL_F_MEMS_ALLOWED)), one CPU each.\n", online);
    pin_to(last);
    printf("1. Pinned to CPU %d. With no policy (MPOL_DEFAULT) a page comes from the node of the\n"
           "   CPU that first touches it - 'local' allocation:\n", last);
    touch_and_show();
    printf("2. set_mempolicy(MPOL_BIND, {0}): only node 0, wherever the thread runs:\n");
    setmp(BIND, 1);
    touch_and_show();
    printf("3. set_mempolicy(MPOL_PREFERRED, {%d}) while running on CPU 0: node %d first:\n", last, last);
    pin_to(0);
    setmp(PREFERRED, 1ul << last);
    touch_and_show();
    printf("4. set_mempolicy(MPOL_INTERLEAVE, all): page n goes to node number (n %% %d) of the mask,\n"
           "   n = address >> 12 - round-robin by address, not by order of touching:\n", __builtin_popcountl(online));
    setmp(INTERLEAVE, online);
    touch_and_show();
    setmp(DEFAULT, 0);
    printf("5. mbind() gives one area its own policy, which wins over the thread's. The area's\n"
           "   pages are bound to node %d; the thread's policy is back to the default (local, node 0):\n", last);
    char *p = fresh();
    unsigned long top = 1ul << last;
    printf("   mbind(MPOL_BIND, {%d}) = %ld\n", last, syscall(SYS_mbind, p, PAGES * PAGE, BIND, &top, 64, 0));
    show(p, 1);
    printf("6. mbind(MPOL_BIND, {0}, MPOL_MF_MOVE) moves the pages already there - copied to node 0\n"
           "   and remapped, contents kept:\n");
    unsigned long zero = 1;
    printf("   mbind = %ld\n", syscall(SYS_mbind, p, PAGES * PAGE, BIND, &zero, 64, 2));
    show(p, 0);
    int kept = 1;
    for (int i = 0; i < PAGES; i++) kept &= p[i * PAGE] == 1;
    printf("   every page still holds the byte written before the move: %s\n", kept ? "yes" : "no");
    return 0;
}
