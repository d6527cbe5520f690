/* nsbox-init: the two small PID-1 programs of nsbox, as one executable.
 *
 *   nsbox-init --main PID   the tiny init of `run --init` (docs/lifecycle.md, Termination 10)
 *   nsbox-init --pause      PID 1 of a pod-wide PID namespace (shareProcessNamespace)
 *
 * Both used to be forks of the pod's watcher (a Python process) that never
 * exec'd: each then kept a private copy of every page the watcher changed
 * after the fork, 5-6 MB. Exec'd, each is a few hundred kB. nsbox starts
 * them itself; they are not meant to be run by hand.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* --main PID: the spawn code of nsbox (csrc/nsbox.c, init_main) blocked every
 * signal, forked the main process PID (which exec'd the command) and exec'd
 * us; the mask and any pending signal survive execve, so none is lost:
 *  - SIGCHLD: every exited child is reaped, orphans included; once the main
 *    process is among them we exit with its code, or 128+N if signal N
 *    killed it (the shell's convention: PID 1 cannot die of a signal sent
 *    to itself without a handler, so re-raising would not work);
 *  - any other signal goes to the main process only, not to its group (as
 *    tini without -g): what its own children get is the command's business. */
static int run_init(pid_t main_pid)
{
    sigset_t all;
    siginfo_t info;
    int status;
    pid_t pid;

    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    prctl(PR_SET_NAME, "nsbox-init", 0, 0, 0);
    /* Not PID 1 (host or shared PID namespace): adopt the orphans anyway. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    for (;;) {
        int sig = sigwaitinfo(&all, &info);
        if (sig > 0 && sig != SIGCHLD)
            kill(main_pid, sig);    /* a zombie until reaped: never recycled */
        if (sig != SIGCHLD)
            continue;
        while ((pid = waitpid(-1, &status, WNOHANG | __WALL)) > 0)
            if (pid == main_pid)
                return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        if (pid < 0 && errno == ECHILD)
            return 1;               /* the main process was never ours */
    }
}

/* --pause: only reap. Orphans of the pod's containers are reparented here.
 * Signals keep their default actions, as the pause's always had: from inside
 * the namespace PID 1 ignores them, the watcher (outside) can end it. SIGCHLD
 * stays blocked and pending, so sigwaitinfo cannot miss an exit between two
 * waits. */
static void __attribute__((noreturn)) run_pause(void)
{
    sigset_t chld;

    /* The pause runs with no capabilities (nsbox/sandbox.py) but as root, in
     * the watcher's mount namespace and root: the host's files. Not dumpable,
     * so the pod's processes, which see it as a process of their PID
     * namespace, can neither trace it nor open its /proc/PID/root, cwd or fd
     * (that takes CAP_SYS_PTRACE, which no default container has). It starts
     * before any container. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    prctl(PR_SET_NAME, "nsbox-pause", 0, 0, 0);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_SETMASK, &chld, NULL);
    for (;;) {
        if (waitpid(-1, NULL, __WALL) < 0 && errno == ECHILD)
            sigwaitinfo(&chld, NULL);
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--pause") == 0)
        run_pause();
    if (argc == 3 && strcmp(argv[1], "--main") == 0) {
        char *end;
        long pid = strtol(argv[2], &end, 10);
        if (*argv[2] && !*end && pid > 0)
            return run_init((pid_t)pid);
    }
    fprintf(stderr, "usage: nsbox-init --main PID | --pause (started by nsbox, not by hand)\n");
    return 2;
}
