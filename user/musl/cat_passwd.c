/* Reads /etc/passwd from the ramdisk and prints its first line; echoes its arguments. */
#include <stdio.h>

int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++) printf("argv[%d] = %s\n", i, argv[i]);
    FILE *f = fopen("/etc/passwd", "r");
    if (!f) {
        perror("fopen /etc/passwd");
        return 1;
    }
    char line[256];
    if (!fgets(line, sizeof line, f)) {
        printf("empty /etc/passwd\n");
        return 1;
    }
    printf("first line of /etc/passwd: %s", line);
    fclose(f);
    return 0;
}
