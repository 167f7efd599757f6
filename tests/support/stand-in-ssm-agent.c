/*
 * A stand-in for amazon-ssm-agent, for ssm-companion's health tests (never shipped).
 *
 * One native binary, installed under the agent's names so that /proc/<pid>/exe matches as for the
 * real agent:
 *   amazon-ssm-agent -version   prints "SSM Agent version: <STAND_IN_VERSION or 3.3.987.0>"
 *   amazon-ssm-agent            the "core": starts <its dir>/ssm-agent-worker and waits
 *   ssm-agent-worker            the "worker": appends the agent's periodic health line to
 *                               $STAND_IN_LOG every $STAND_IN_PERIOD seconds (default 60), or,
 *                               with STAND_IN_MODE=hibernate, the hibernation line, in the
 *                               agent's real log format (reference/ssm-agent.md §7-8).
 */
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void log_line(const char *msg) {
    const char *path = getenv("STAND_IN_LOG");
    if (!path) return;
    FILE *f = fopen(path, "a");
    if (!f) return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(f, "%s.%04ld INFO %s\n", stamp, (long)(tv.tv_usec / 100), msg);
    fclose(f);
}

int main(int argc, char **argv) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) return 1;
    self[n] = 0;
    char dir[PATH_MAX];
    strcpy(dir, self);
    char *d = dirname(dir);
    const char *name = strrchr(self, '/') ? strrchr(self, '/') + 1 : self;

    if (argc == 2 && strcmp(argv[1], "-version") == 0) {
        const char *v = getenv("STAND_IN_VERSION");
        printf("SSM Agent version: %s\n", v ? v : "3.3.987.0");
        return 0;
    }
    if (strcmp(name, "ssm-agent-worker") == 0) {
        const char *p = getenv("STAND_IN_PERIOD");
        int period = p ? atoi(p) : 60;
        if (period < 1) period = 1;
        const char *mode = getenv("STAND_IN_MODE");
        log_line("[ssm-agent-worker] ssm-agent-worker - v3.3.987.0");
        for (;;) {
            if (mode && strcmp(mode, "hibernate") == 0)
                log_line("[ssm-agent-worker] Entering SSM Agent hibernate - AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/test/i-0123456789abcdef0 is not authorized to perform: ssm:UpdateInstanceInformation");
            else
                log_line("[ssm-agent-worker] [HealthCheck] HealthCheck reporting agent health.");
            sleep(period);
        }
    }
    /* The core: start the worker and keep it running, as the real core does. */
    log_line("[amazon-ssm-agent] amazon-ssm-agent - v3.3.987.0");
    log_line("[amazon-ssm-agent] Starting Core Agent");
    char worker[PATH_MAX];
    snprintf(worker, sizeof worker, "%s/ssm-agent-worker", d);
    for (;;) {
        pid_t pid = fork();
        if (pid == 0) {
            execl(worker, "ssm-agent-worker", (char *)NULL);
            _exit(127);
        }
        if (pid < 0) return 1;
        int status;
        waitpid(pid, &status, 0);
        log_line("[amazon-ssm-agent] [WorkerProvider] Worker ssm-agent-worker is not running, starting worker process");
        sleep(1);
    }
}
