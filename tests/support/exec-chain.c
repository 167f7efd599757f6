/*
 * A process that execs itself again and again: `exec-chain N LIMIT DONE` runs as
 * `exec-chain N+1 LIMIT DONE` until N reaches LIMIT, then as `/bin/touch DONE`. One pid, LIMIT+1
 * programs in a row, each with its own argv: the proc connector test's way of putting two
 * execs of one process on either side of the daemon's read batches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: exec-chain N LIMIT DONE\n");
        return 2;
    }
    long n = strtol(argv[1], NULL, 10);
    long limit = strtol(argv[2], NULL, 10);
    if (n < limit) {
        char next[24];
        snprintf(next, sizeof next, "%ld", n + 1);
        execl(argv[0], argv[0], next, argv[2], argv[3], (char *)NULL);
    } else {
        execl("/bin/touch", "touch", argv[3], (char *)NULL);
    }
    perror("exec");
    return 1;
}
