/* Says one line and powers the machine off the Linux way: reboot(LINUX_REBOOT_CMD_POWER_OFF).
 * This is how conformance programs end on Linux, where init must never exit. */
#include <stdio.h>
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
    printf("powering off\n");
    fflush(stdout);
    reboot(RB_POWER_OFF);
    printf("reboot returned\n");
    return 1;
}
