/* fork, exit and page faults on every CPU at once. Four worker threads of one process — each
 * pinned to its own CPU where there are several — fork 100 times each. Before each fork the
 * worker writes its pattern into its own 16 pages; the child checks that it sees exactly that
 * pattern, writes its own (copy-on-write breaks in the child), touches fresh pages and exits;
 * the parent meanwhile overwrites its pages (copy-on-write breaks in the parent), reaps the
 * child and checks it still sees only its own writes. Every fork's frames, page tables and
 * kernel stack must come back: pikku's test harness checks the kernel's memory line after this
 * program, as after `procs`. Only counts are printed. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "pikku_user.h"
#include "pikku_smp.h"

#define WORKERS 4
#define FORKS 100
#define PAGES 16
#define FRESH_PAGES 4
#define PAGE 4096

static int ncpus;

struct worker {
    int index;
    long children_ok, children_bad, parent_wrong, failed_calls;
};

/* Byte `p` of round `r` of worker `w`, as the parent writes it before forking. */
static char pattern(int w, int r, int p) { return (char)(1 + w * 31 + r * 7 + p); }

/* The child: sees the parent's pattern of this round, breaks copy-on-write on every page,
 * faults in fresh pages. Exit 0 if everything read back as written. */
static int child(char *area, int w, int r) {
    int ok = 1;
    for (int p = 0; p < PAGES; p++) ok &= area[p * PAGE] == pattern(w, r, p);
    for (int p = 0; p < PAGES; p++) area[p * PAGE] = (char)~pattern(w, r, p);
    for (int p = 0; p < PAGES; p++) ok &= area[p * PAGE] == (char)~pattern(w, r, p);
    char *fresh = mmap(0, FRESH_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fresh == MAP_FAILED) return 1;
    for (int p = 0; p < FRESH_PAGES; p++) ok &= fresh[p * PAGE] == 0, fresh[p * PAGE] = 'f';
    return ok ? 0 : 1;
}

static void *worker(void *arg) {
    struct worker *w = arg;
    pin_to(w->index % ncpus);
    char *area = mmap(0, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) {
        w->failed_calls++;
        return 0;
    }
    for (int r = 0; r < FORKS; r++) {
        for (int p = 0; p < PAGES; p++) area[p * PAGE] = pattern(w->index, r, p);
        pid_t c = fork();
        if (c == 0) _exit(child(area, w->index, r));
        if (c < 0) {
            w->failed_calls++;
            continue;
        }
        for (int p = 0; p < PAGES; p++) area[p * PAGE] = 'P';
        int st;
        if (waitpid(c, &st, 0) != c) w->failed_calls++;
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) w->children_ok++;
        else w->children_bad++;
        for (int p = 0; p < PAGES; p++) w->parent_wrong += area[p * PAGE] != 'P';
    }
    munmap(area, PAGES * PAGE);
    return 0;
}

int main(void) {
    smp_program_begin("smp_forks", 240);
    ncpus = allowed_cpus();
    struct worker w[WORKERS];
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (struct worker){.index = i};
        pthread_create(&t[i], 0, worker, &w[i]);
    }
    struct worker sum = {0};
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(t[i], 0);
        sum.children_ok += w[i].children_ok;
        sum.children_bad += w[i].children_bad;
        sum.parent_wrong += w[i].parent_wrong;
        sum.failed_calls += w[i].failed_calls;
    }
    printf("%d workers x %d forks: %ld children saw their parent's pages and exited 0, %ld did not\n", WORKERS, FORKS, sum.children_ok, sum.children_bad);
    printf("parent pages wrong after a child's writes: %ld\n", sum.parent_wrong);
    printf("failed mmap/fork/waitpid: %ld\n", sum.failed_calls);
    int st;
    printf("children left to reap: %s\n", waitpid(-1, &st, WNOHANG) < 0 && errno == ECHILD ? "none" : "some");
    return 0;
}
