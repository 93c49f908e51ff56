/* Faults on purpose; argv[1] picks which. The kernel must stop this program, report it, and
 * keep running. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    printf("about to: %s\n", what);
    fflush(stdout);
    if (!strcmp(what, "priv")) {
        __asm__ volatile("hlt"); /* privileged: #GP in ring 3 */
    } else if (!strcmp(what, "rodata")) {
        volatile char *s = (volatile char *)"a string literal";
        s[0] = 'X'; /* read-only page: #PF, protection violation */
    } else if (!strcmp(what, "jump")) {
        void (*f)(void) = (void (*)(void))0x7000deadb000UL;
        f(); /* nothing mapped there: #PF on the instruction fetch */
    } else if (!strcmp(what, "ud2")) {
        __asm__ volatile("ud2"); /* invalid opcode: #UD */
    }
    printf("still alive\n");
    return 0;
}
