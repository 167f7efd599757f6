/*
 * A stand-in for the agent's ssm-session-worker, for the audit tests.
 *
 *   ssm-session-worker SESSION_ID COMMAND
 *
 * Runs `/bin/sh -c COMMAND` on a new pseudo-terminal (its own session, the pts its controlling
 * terminal), as the real worker runs the session's shell; argv[1] is the session id, as the
 * real worker's is. Copies the terminal's output to stdout and exits with the shell's status.
 * Build: gcc -O2 -o ssm-session-worker ssm-session-worker.c -lutil
 */
#include <errno.h>
#include <pty.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: ssm-session-worker SESSION_ID COMMAND\n");
        return 64;
    }
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    if (pid < 0) {
        perror("forkpty");
        return 70;
    }
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", argv[2], (char *)NULL);
        _exit(127);
    }
    char buf[4096];
    for (;;) {
        ssize_t n = read(master, buf, sizeof buf);
        if (n > 0) {
            if (write(1, buf, (size_t)n) < 0) {
                break;
            }
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            break; /* EIO: the terminal's last holder closed it */
        }
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) {
        perror("waitpid");
        return 70;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
