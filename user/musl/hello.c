/* The first program: musl start-up, printf, a 1 MiB malloc that is touched, exit status 7. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    printf("hello from pikku\n");
    size_t n = 1 << 20;
    unsigned char *p = malloc(n);
    if (!p) {
        printf("malloc failed\n");
        return 1;
    }
    memset(p, 0xab, n);
    unsigned long sum = 0;
    for (size_t i = 0; i < n; i++) sum += p[i];
    printf("touched %zu KiB, checksum %lu\n", n / 1024, sum);
    free(p);
    return 7;
}
