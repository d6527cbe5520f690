/* nsbox-idle: a pod's watcher while nothing happens.
 *
 *   nsbox-idle [--wake-on FD]... [--log PIPE_FD:LOG_FD:STREAM]... [--wake-at NS]
 *              [--check PATH] [--probe SPEC]... [--end LISTENER:LOCK[:NETNS]]
 *              [--stop PID:SIGNAL]... -- PROGRAM [ARG...]
 *
 * The watcher of a pod is a Python process of ~12 MB that mostly waits. When
 * it has nothing under way it execs this program in its own process: the PID,
 * the children, the namespaces and the inherited descriptors survive execve,
 * and what is left to do needs ~0.1 MB of private memory (0.25 MB once output
 * has flowed through its buffers; libc is shared):
 *  - copy the containers' output from their pipes (--log) into the CRI log
 *    files, record for record as nsbox/logs.py StreamWriter writes them;
 *  - exec the watcher back (execv(PROGRAM, {PROGRAM, ARG..., NULL})) as soon
 *    as anything needs Python: a --wake-on FD is readable or hung up (the
 *    control socket, pidfds), a child exited, a log pipe ended, the monotonic
 *    clock reached --wake-at, or --check PATH is gone (the pod's state was
 *    wiped; looked at every 2 s);
 *  - run the pod's tcpSocket and plain-HTTP httpGet probes (--probe) when they are due,
 *    and exec the watcher back only when a result needs it: a failure (an Unhealthy
 *    event, perhaps a kill), a success that turns the reported result (readiness,
 *    startup), or a redirect (Python follows it as the kubelet does). A success that
 *    changes nothing is only counted. Each probe's state goes back to PROGRAM as one
 *    more argument, "ID:NEXT_NS:REPORTED:LAST:RUN:OUTCOME" (docs/lifecycle.md, "Probes").
 *  - with --end (Python decided, at hibernation, that the pod may end without it: no
 *    preStop hook, no sidecar order, every container its child; hibernation.py), answer
 *    the `delete` requests on the control socket LISTENER itself (nsbox/deletion.py's
 *    protocol): acknowledge, send each --stop PID its SIGNAL, SIGKILL those still running
 *    at max(grace, SIGTERM + 2 s) (docs/lifecycle.md, Termination 3-4), and once every one
 *    has exited (left unreaped), hand LISTENER, LOCK (the watcher.lock flock) and NETNS
 *    to one of the deleting CLIs with {"teardown": true}, and exit: that CLI runs the
 *    teardown (termination.py) as a watcher would. With nobody to hand over to, PROGRAM
 *    is exec'd with the extra argument "nsbox-idle:deleting" and finishes the deletion.
 *    Any other first request is passed to PROGRAM, as an accepted socket ("accepted:FD").
 * argv[0] is the process title. Bad arguments exit 2; once running, any
 * trouble execs PROGRAM rather than end the pod's watcher. nsbox starts it
 * itself; it is not meant to be run by hand.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE (16 * 1024)        /* nsbox/logs.py MAX_LINE: longer lines become P records */
#define READ_SIZE (64 * 1024)       /* one read of a pipe: a pipe's default capacity */
#define OUT_SIZE (64 * 1024)        /* records are batched into writes of at most this */
#define CHECK_EVERY_NS 2000000000LL /* how often --check PATH is looked at */
#define NEVER INT64_MAX

struct stream {
    int pipe_fd, log_fd;
    const char *name;               /* "stdout" or "stderr" */
    char *pending;                  /* a line not complete yet: MAX_LINE bytes at most, */
    size_t npending;                /* allocated when first needed */
    int ended;                      /* while the pod ends (--end): its pipe is done */
};

#define PROBE_BODY_LIMIT (10 * 1024) /* nsbox/kube/probes.py PROBE_OUTPUT_LIMIT: read, then close */
#define NONE 2                      /* a result not known yet (ResultRun's None) */

/* One probe, as nsbox/watcher/probes.py hands it over:
 *   ID:KIND:NEXT_NS:PERIOD_NS:TIMEOUT_NS:SUCCESS_THRESHOLD:REPORTED:LAST:RUN:IPV4:PORT[:REQUEST]
 * KIND is tcp or http; REPORTED and LAST are 0, 1 or 2 (none); REQUEST, for http, is the
 * whole request as the kubelet sends it, built by Python. */
struct probe {
    const char *id;
    int http;
    int64_t next, period, timeout;
    long long success_threshold, run;
    int reported, last;
    struct sockaddr_in addr;
    const char *request;
    char outcome[32];               /* for Python: "" (nothing), "ok", "redirect", "fail ..." */
};

/* A container's main process, our child, and the signal that asks it to stop. */
struct stop {
    pid_t pid;
    int sig;
};

/* What the command line asks for; carried out by idle() below. */
struct plan {
    int *wake_fds;
    int nwake;
    struct stream *streams;
    int nstreams;
    int64_t wake_at;                /* CLOCK_MONOTONIC ns, or NEVER */
    const char *check_path;         /* or NULL */
    struct probe *probes;
    int nprobes;
    char **program;                 /* the argv to exec on wake; program[0] is its path */
    /* --end: the pod may end without Python; -1 when not given */
    int end_listener, end_lock, end_netns;
    struct stop *stops;             /* --stop: each running container's main process */
    int nstops;
};

/* ---- the command line ------------------------------------------------------ */

/* One line on stderr (the watcher's log), in one write. */
static void __attribute__((noreturn, format(printf, 1, 2))) bad_usage(const char *fmt, ...)
{
    char what[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    fprintf(stderr, "nsbox-idle: %s\n", what);
    exit(2);
}

/* A decimal number of digits only (no sign, no blanks); *end is set to what follows. */
static int parse_number(const char *s, const char **end, long long max, long long *out)
{
    char *stop;

    if (*s < '0' || *s > '9')
        return 0;
    errno = 0;
    *out = strtoll(s, &stop, 10);
    *end = stop;
    return errno == 0 && *out <= max;
}

/* An open descriptor: one closed by mistake would make poll report POLLNVAL forever. */
static int parse_fd(const char *s, const char **end)
{
    long long fd;

    if (!parse_number(s, end, INT_MAX, &fd) || fcntl((int)fd, F_GETFD) < 0)
        return -1;
    return (int)fd;
}

static void parse_wake_on(const char *arg, struct plan *p)
{
    const char *end;
    int fd = parse_fd(arg, &end);

    if (fd < 0 || *end)
        bad_usage("--wake-on %s: not an open file descriptor", arg);
    p->wake_fds[p->nwake++] = fd;
}

static void parse_log(const char *arg, struct plan *p)
{
    struct stream *s = &p->streams[p->nstreams++];
    const char *end;

    s->pipe_fd = parse_fd(arg, &end);
    if (s->pipe_fd < 0 || *end != ':')
        bad_usage("--log %s: PIPE_FD is not an open file descriptor", arg);
    s->log_fd = parse_fd(end + 1, &end);
    if (s->log_fd < 0 || *end != ':')
        bad_usage("--log %s: LOG_FD is not an open file descriptor", arg);
    s->name = end + 1;
    if (strcmp(s->name, "stdout") != 0 && strcmp(s->name, "stderr") != 0)
        bad_usage("--log %s: STREAM must be stdout or stderr", arg);
}

/* One field of a --probe SPEC: a number followed by ':' (or the end when last). */
static int probe_field(const char **at, long long max, long long *out, int last)
{
    const char *end;

    if (!parse_number(*at, &end, max, out) || (last ? *end != '\0' && *end != ':' : *end != ':'))
        return 0;
    *at = *end ? end + 1 : end;
    return 1;
}

static void parse_probe(const char *arg, struct plan *p)
{
    struct probe *pr = &p->probes[p->nprobes++];
    long long v[8], port;
    char ip[INET_ADDRSTRLEN];
    const char *at = strchr(arg, ':'), *colon;
    int i;

    pr->id = arg;
    if (!at)
        bad_usage("--probe %s: no KIND", arg);
    at++;
    if (strncmp(at, "tcp:", 4) == 0) {
        at += 4;
    } else if (strncmp(at, "http:", 5) == 0) {
        pr->http = 1;
        at += 5;
    } else {
        bad_usage("--probe %s: KIND must be tcp or http", arg);
    }
    for (i = 0; i < 7; i++)
        if (!probe_field(&at, i < 3 ? NEVER - 1 : (i < 4 || i > 5 ? LLONG_MAX : NONE), &v[i], 0))
            bad_usage("--probe %s: bad number", arg);
    colon = strchr(at, ':');
    if (!colon || (size_t)(colon - at) >= sizeof(ip))
        bad_usage("--probe %s: no IPV4:PORT", arg);
    memcpy(ip, at, (size_t)(colon - at));
    ip[colon - at] = '\0';
    at = colon + 1;
    pr->addr.sin_family = AF_INET;
    if (inet_pton(AF_INET, ip, &pr->addr.sin_addr) != 1)
        bad_usage("--probe %s: %s is not an IPv4 address", arg, ip);
    if (!probe_field(&at, 65535, &port, 1))
        bad_usage("--probe %s: bad port", arg);
    pr->addr.sin_port = htons((uint16_t)port);
    if (pr->http && !*at)
        bad_usage("--probe %s: no REQUEST", arg);
    pr->request = at;
    pr->next = v[0];
    pr->period = v[1] > 0 ? v[1] : 1;
    pr->timeout = v[2] > 0 ? v[2] : 1;
    pr->success_threshold = v[3];
    pr->reported = (int)v[4];
    pr->last = (int)v[5];
    pr->run = v[6];
}

static void parse_end(const char *arg, struct plan *p)
{
    const char *end;

    if (p->end_listener >= 0)
        bad_usage("--end given twice");
    p->end_listener = parse_fd(arg, &end);
    if (p->end_listener < 0 || *end != ':')
        bad_usage("--end %s: LISTENER is not an open file descriptor", arg);
    p->end_lock = parse_fd(end + 1, &end);
    if (p->end_lock < 0 || (*end && *end != ':'))
        bad_usage("--end %s: LOCK is not an open file descriptor", arg);
    if (*end) {
        p->end_netns = parse_fd(end + 1, &end);
        if (p->end_netns < 0 || *end)
            bad_usage("--end %s: NETNS is not an open file descriptor", arg);
    }
}

static void parse_stop(const char *arg, struct plan *p)
{
    struct stop *st = &p->stops[p->nstops++];
    long long pid, sig;
    const char *end;

    if (!parse_number(arg, &end, INT_MAX, &pid) || pid < 1 || *end != ':' ||
        !parse_number(end + 1, &end, 64, &sig) || sig < 1 || *end)
        bad_usage("--stop %s: not PID:SIGNAL", arg);
    st->pid = (pid_t)pid;
    st->sig = (int)sig;
}

static void parse_args(int argc, char **argv, struct plan *p)
{
    int i;

    /* Each option takes one value: there are fewer of each than argc. */
    p->wake_fds = calloc((size_t)argc, sizeof(*p->wake_fds));
    p->streams = calloc((size_t)argc, sizeof(*p->streams));
    p->probes = calloc((size_t)argc, sizeof(*p->probes));
    p->stops = calloc((size_t)argc, sizeof(*p->stops));
    if (!p->wake_fds || !p->streams || !p->probes || !p->stops)
        bad_usage("out of memory");
    p->wake_at = NEVER;
    p->end_listener = p->end_lock = p->end_netns = -1;
    for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i += 2) {
        const char *opt = argv[i], *val = argv[i + 1], *end;
        long long ns;

        if (strcmp(opt, "--wake-on") != 0 && strcmp(opt, "--log") != 0 &&
            strcmp(opt, "--wake-at") != 0 && strcmp(opt, "--check") != 0 &&
            strcmp(opt, "--probe") != 0 && strcmp(opt, "--end") != 0 && strcmp(opt, "--stop") != 0)
            bad_usage("unknown option %s", opt);
        if (!val || strcmp(val, "--") == 0)
            bad_usage("%s needs a value", opt);
        if (strcmp(opt, "--wake-on") == 0) {
            parse_wake_on(val, p);
        } else if (strcmp(opt, "--log") == 0) {
            parse_log(val, p);
        } else if (strcmp(opt, "--probe") == 0) {
            parse_probe(val, p);
        } else if (strcmp(opt, "--end") == 0) {
            parse_end(val, p);
        } else if (strcmp(opt, "--stop") == 0) {
            parse_stop(val, p);
        } else if (strcmp(opt, "--wake-at") == 0) {
            if (p->wake_at != NEVER)
                bad_usage("--wake-at given twice");
            if (!parse_number(val, &end, NEVER - 1, &ns) || *end)
                bad_usage("--wake-at %s: not a time in nanoseconds", val);
            p->wake_at = ns;
        } else {
            if (p->check_path)
                bad_usage("--check given twice");
            p->check_path = val;
        }
    }
    if (i >= argc || i + 1 >= argc)
        bad_usage("missing -- PROGRAM [ARG...]");
    p->program = &argv[i + 1];
    if (p->program[0][0] != '/')
        bad_usage("PROGRAM %s is not an absolute path", p->program[0]);
    if (p->nstops > 0 && p->end_listener < 0)
        bad_usage("--stop without --end");
    for (i = 0; i < p->nwake && p->end_listener >= 0; i++)
        if (p->wake_fds[i] == p->end_listener)
            break;
    if (p->end_listener >= 0 && i == p->nwake)
        bad_usage("--end: LISTENER is not a --wake-on descriptor");
}

/* ---- CRI log records --------------------------------------------------------- */

static char in_buf[MAX_LINE + READ_SIZE];  /* a stream's pending bytes, then one read */
static char out_buf[OUT_SIZE];
static size_t out_len;
static char prefix[40];                    /* "<timestamp> <stream> " of the records being made */
static size_t prefix_len;

/* Write everything, or give up on it: a full disk must not end the pod's watcher. */
static void write_all(int fd, const char *buf, size_t len)
{
    static int reported;

    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (!reported)
                fprintf(stderr, "nsbox-idle: write to log fd %d: %s (output dropped)\n",
                        fd, n < 0 ? strerror(errno) : "nothing written");
            reported = 1;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

static void out_flush(int fd)
{
    write_all(fd, out_buf, out_len);
    out_len = 0;
}

/* Zero-padded decimal digits, `width` of them. */
static void put_digits(char *out, long v, int width)
{
    while (width-- > 0) {
        out[width] = (char)('0' + v % 10);
        v /= 10;
    }
}

static int leap_year(long y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* "YYYY-MM-DD" of day `days` counted from 1970-01-01. Needed once a day (the
 * text is kept): counting years and months one by one is fast enough. */
static void format_date(char *out, long days)
{
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    long year = 1970;
    int month = 0;

    while (days >= 365 + leap_year(year)) {
        days -= 365 + leap_year(year);
        year++;
    }
    while (days >= month_days[month] + (month == 1 && leap_year(year))) {
        days -= month_days[month] + (month == 1 && leap_year(year));
        month++;
    }
    put_digits(out, year, 4);
    out[4] = '-';
    put_digits(out + 5, month + 1, 2);
    out[7] = '-';
    put_digits(out + 8, days + 1, 2);
}

/* The prefix of the records of one read: its time, RFC 3339 with nanoseconds
 * in UTC (nsbox/logs.py rfc3339_nano), and the stream. Formatted here, not by
 * gmtime_r and snprintf: glibc's gmtime reads /etc/localtime on first use, and
 * both would map more of libc into this small process. */
static void begin_records(const struct stream *s)
{
    static long date_day = -1;
    static char date[10];
    size_t name_len = strlen(s->name);
    struct timespec ts;
    long day, sec;

    clock_gettime(CLOCK_REALTIME, &ts);
    day = ts.tv_sec / 86400;
    sec = ts.tv_sec % 86400;
    if (day != date_day) {
        format_date(date, day);
        date_day = day;
    }
    memcpy(prefix, date, 10);
    prefix[10] = 'T';
    put_digits(prefix + 11, sec / 3600, 2);
    prefix[13] = ':';
    put_digits(prefix + 14, sec / 60 % 60, 2);
    prefix[16] = ':';
    put_digits(prefix + 17, sec % 60, 2);
    prefix[19] = '.';
    put_digits(prefix + 20, ts.tv_nsec, 9);
    prefix[29] = 'Z';
    prefix[30] = ' ';
    memcpy(prefix + 31, s->name, name_len);     /* "stdout" or "stderr" */
    prefix[31 + name_len] = ' ';
    prefix_len = 32 + name_len;
}

/* One record, "<prefix><F|P> <content>\n", into the output buffer of s's log. */
static void add_record(const struct stream *s, char tag, const char *content, size_t len)
{
    size_t need = prefix_len + 3 + len;     /* content is at most MAX_LINE: it always fits */

    if (out_len + need > sizeof(out_buf))
        out_flush(s->log_fd);
    memcpy(out_buf + out_len, prefix, prefix_len);
    out_len += prefix_len;
    out_buf[out_len++] = tag;
    out_buf[out_len++] = ' ';
    memcpy(out_buf + out_len, content, len);
    out_len += len;
    out_buf[out_len++] = '\n';
}

/* The rule of StreamWriter.feed: a newline within MAX_LINE + 1 bytes ends a full
 * line; without one, more than MAX_LINE bytes make a partial record of MAX_LINE;
 * fewer wait for more. Returns how many bytes at the end are left waiting. */
static size_t add_lines(const struct stream *s, const char *buf, size_t len)
{
    size_t start = 0;

    for (;;) {
        size_t left = len - start;
        const char *nl = memchr(buf + start, '\n', left < MAX_LINE + 1 ? left : MAX_LINE + 1);

        if (nl) {
            add_record(s, 'F', buf + start, (size_t)(nl - (buf + start)));
            start = (size_t)(nl - buf) + 1;
        } else if (left > MAX_LINE) {
            add_record(s, 'P', buf + start, MAX_LINE);
            start += MAX_LINE;
        } else {
            return left;
        }
    }
}

/* What is pending as one partial record (StreamWriter.flush): `logs` joins it
 * with what follows. */
static void flush_pending(struct stream *s)
{
    if (s->npending == 0)
        return;
    begin_records(s);
    add_record(s, 'P', s->pending, s->npending);
    out_flush(s->log_fd);
    s->npending = 0;
}

static void keep_pending(struct stream *s, const char *rest, size_t len)
{
    if (len > 0 && !s->pending && !(s->pending = malloc(MAX_LINE))) {
        /* Nowhere to keep it: write it now as a partial record rather than lose it. */
        add_record(s, 'P', rest, len);
        out_flush(s->log_fd);
        len = 0;
    }
    if (len > 0)
        memcpy(s->pending, rest, len);
    s->npending = len;
}

/* One read of a log pipe into its log. Returns 0 at the end of the stream
 * (or on an error reading it: the watcher will see it too), 1 otherwise. */
static int copy_once(struct stream *s)
{
    size_t len, rest;
    ssize_t n;

    if (s->npending > 0)
        memcpy(in_buf, s->pending, s->npending);
    do
        n = read(s->pipe_fd, in_buf + s->npending, READ_SIZE);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN;
    if (n == 0)
        return 0;
    len = s->npending + (size_t)n;
    begin_records(s);
    rest = add_lines(s, in_buf, len);
    out_flush(s->log_fd);
    keep_pending(s, in_buf + len - rest, rest);
    return 1;
}

/* ---- waiting and waking ------------------------------------------------------ */

/* ---- ending the pod without Python (--end) ------------------------------------ */

#define MAX_CLIENTS 16
#define KILL_MIN_GAP_NS 2000000000LL /* nsbox/kube/lifecycle.py KILL_MIN_GAP */
#define KILL_WAIT_NS 5000000000LL    /* after SIGKILL, how long exits are waited for (termination.py kill_all) */
#define MAX_GRACE 1000000000LL       /* seconds: more is "forever" in nanoseconds that still fit */

enum { FREE, ASKING, DELETING };    /* a connection: its request not read yet; a deleting CLI */

static struct client {
    int fd, state;
} clients[MAX_CLIENTS];

static struct {
    int begun, killed;
    int64_t term_at;                /* when the stop signals went (monotonic ns) */
    int64_t kill_at;                /* when SIGKILL is due; after it, when the exits are waited for no longer */
} ending;

/* PROGRAM's argv: the given one, then each probe's state "ID:NEXT_NS:REPORTED:LAST:RUN:OUTCOME",
 * each connection whose request is Python's "accepted:FD", and "nsbox-idle:deleting" once the
 * pod has begun to end. Without memory for it, the given one: Python then counts from what it
 * handed over, and the connections it did not get are closed (their CLIs ask again). */
static char **program_argv(const struct plan *p)
{
    char **argv;
    int n = 0, i, k;

    while (p->program[n])
        n++;
    argv = calloc((size_t)(n + p->nprobes + MAX_CLIENTS + 2), sizeof(*argv));
    if (!argv)
        return p->program;
    memcpy(argv, p->program, (size_t)n * sizeof(*argv));
    for (i = 0; i < p->nprobes; i++) {
        const struct probe *pr = &p->probes[i];
        char *arg = malloc(128);

        if (!arg)
            return p->program;
        snprintf(arg, 128, "%.*s:%lld:%d:%d:%lld:%s", (int)strcspn(pr->id, ":"), pr->id,
                 (long long)pr->next, pr->reported, pr->last, pr->run, pr->outcome);
        argv[n++] = arg;
    }
    for (k = 0; k < MAX_CLIENTS; k++) {
        char *arg;

        if (clients[k].state != ASKING || !(arg = malloc(32)) || fcntl(clients[k].fd, F_SETFD, 0) < 0)
            continue;
        snprintf(arg, 32, "accepted:%d", clients[k].fd);
        argv[n++] = arg;
    }
    if (ending.begun)
        argv[n++] = "nsbox-idle:deleting";
    return argv;
}

static void __attribute__((noreturn)) wake(const struct plan *p)
{
    int i;

    for (i = 0; i < p->nstreams; i++)
        flush_pending(&p->streams[i]);
    execv(p->program[0], program_argv(p));
    fprintf(stderr, "nsbox-idle: exec %s: %s\n", p->program[0], strerror(errno));
    exit(127);
}

/* SIGCHLD is blocked and watched through a signalfd that is never read: the
 * signal stays pending across the exec of PROGRAM, which unblocks it and reaps.
 * The other signals keep the dispositions and mask they came with. */
static int watch_children(void)
{
    sigset_t chld;

    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    return signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* A child that exited before SIGCHLD was blocked left no pending signal, but
 * is still a zombie: look for one, without reaping it. */
static int child_exited(void)
{
    siginfo_t info;

    memset(&info, 0, sizeof(info));
    return waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0;
}

static int state_vanished(const char *path)
{
    struct stat st;

    return lstat(path, &st) < 0 && errno == ENOENT;
}

static int64_t monotonic_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- probes ------------------------------------------------------------------ */

/* Wait until `fd` is ready for `events` or `deadline`: 1 ready, 0 timed out. Other
 * descriptors wait meanwhile (a check lasts at most its probe's timeout). */
static int wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd pfd = {.fd = fd, .events = events};

    for (;;) {
        int64_t left = deadline - monotonic_ns();
        struct timespec ts;
        int n;

        if (left <= 0)
            return 0;
        ts.tv_sec = left / 1000000000LL;
        ts.tv_nsec = left % 1000000000LL;
        n = ppoll(&pfd, 1, &ts, NULL);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return 1;               /* the next call on fd reports the error */
    }
}

/* A non-blocking connect bounded by the deadline; 0 connected, else the outcome written. */
static int dial(const struct probe *pr, int fd, int64_t deadline, char *outcome, size_t size)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (connect(fd, (const struct sockaddr *)&pr->addr, sizeof(pr->addr)) == 0)
        return 0;
    if (errno != EINPROGRESS) {
        snprintf(outcome, size, "fail errno=%d", errno);
        return -1;
    }
    if (!wait_fd(fd, POLLOUT, deadline)) {
        snprintf(outcome, size, "fail dial-timeout");
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        snprintf(outcome, size, "fail errno=%d", err);
        return -1;
    }
    return 0;
}

/* Send the request, read the status line (then the body, up to the kubelet's limit, so
 * that the server is not cut off mid-answer): 200-299 ok, 300-399 redirect (Python
 * follows it), anything else a failure. */
static void http_exchange(const struct probe *pr, int fd, int64_t deadline, char *outcome, size_t size)
{
    const char *req = pr->request;
    size_t left = strlen(req), got = 0, seen = 0;
    char head[16], body[1024];
    int status;

    while (left > 0) {
        ssize_t n = send(fd, req, left, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_fd(fd, POLLOUT, deadline))
                goto timed_out;
            continue;
        }
        if (n < 0) {
            snprintf(outcome, size, "fail errno=%d", errno);
            return;
        }
        req += n;
        left -= (size_t)n;
    }
    while (got < 12 || seen < PROBE_BODY_LIMIT) {
        ssize_t n;

        if (!wait_fd(fd, POLLIN, deadline)) {
            if (got >= 12)
                break;      /* the status is known; a slow body does not fail it */
            goto timed_out;
        }
        n = got < 12 ? read(fd, head + got, 12 - got) : read(fd, body, sizeof(body));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0 && got < 12) {
            snprintf(outcome, size, "fail errno=%d", errno);
            return;
        }
        if (n <= 0)
            break;
        if (got < 12)
            got += (size_t)n;
        else
            seen += (size_t)n;
    }
    /* "HTTP/1.x NNN" */
    if (got < 12 || memcmp(head, "HTTP/1.", 7) != 0 || head[8] != ' ' || head[9] < '1' || head[9] > '5' ||
        head[10] < '0' || head[10] > '9' || head[11] < '0' || head[11] > '9') {
        snprintf(outcome, size, "fail bad-response");
        return;
    }
    status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
    if (status >= 200 && status < 300)
        snprintf(outcome, size, "ok");
    else if (status >= 300 && status < 400)
        snprintf(outcome, size, "redirect");
    else
        snprintf(outcome, size, "fail status=%d", status);
    return;
timed_out:
    snprintf(outcome, size, "fail timeout");
}

/* One check: its outcome in `outcome` ("ok", "redirect" or "fail ..."). */
static void check(const struct probe *pr, char *outcome, size_t size)
{
    int64_t deadline = monotonic_ns() + pr->timeout;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        snprintf(outcome, size, "fail errno=%d", errno);
        return;
    }
    if (dial(pr, fd, deadline, outcome, size) == 0) {
        if (pr->http)
            http_exchange(pr, fd, deadline, outcome, size);
        else
            snprintf(outcome, size, "ok");
    }
    close(fd);
}

/* Run the probes that are due; 1 if a result needs Python (its outcome is left for it,
 * the counts as they were before it: Python counts it as it counts its own checks). */
static int run_probes(struct plan *p, int64_t now)
{
    int i, woken = 0;

    for (i = 0; i < p->nprobes; i++) {
        struct probe *pr = &p->probes[i];
        char outcome[sizeof(pr->outcome)];
        long long run;

        if (now < pr->next || pr->outcome[0])
            continue;
        check(pr, outcome, sizeof(outcome));
        while (pr->next <= now)
            pr->next += pr->period;     /* a check that took long skips ticks, as a busy worker */
        if (strcmp(outcome, "redirect") == 0) {
            pr->next = monotonic_ns();  /* due at once, for Python to follow the redirect */
            memcpy(pr->outcome, outcome, sizeof(outcome));
            woken = 1;
            continue;
        }
        /* ResultRun.add (nsbox/kube/probes.py): a success turns the result only after
         * successThreshold in a row, and only if it was not a success already. */
        run = pr->last == 1 ? pr->run + 1 : 1;
        if (strcmp(outcome, "ok") != 0 || (run >= pr->success_threshold && pr->reported != 1)) {
            memcpy(pr->outcome, outcome, sizeof(outcome));
            woken = 1;
            continue;
        }
        pr->last = 1;
        pr->run = run < LLONG_MAX ? run : LLONG_MAX - 1;
    }
    return woken;
}

static int64_t next_probe(const struct plan *p)
{
    int64_t next = NEVER;
    int i;

    for (i = 0; i < p->nprobes; i++)
        if (p->probes[i].next < next)
            next = p->probes[i].next;
    return next;
}

/* ---- ending the pod without Python (--end) ------------------------------------ */

/* Has this main process exited? It stays a zombie: Python, if it is exec'd, reaps it and
 * records its exit as it would have (an error, not our child any more, counts as exited). */
static int exited(pid_t pid)
{
    siginfo_t info;

    memset(&info, 0, sizeof(info));
    return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0 || info.si_pid == pid;
}

static int all_exited(const struct plan *p)
{
    int i;

    for (i = 0; i < p->nstops; i++)
        if (!exited(p->stops[i].pid))
            return 0;
    return 1;
}

/* Exactly the request nsbox/deletion.py ask() sends: {"op": "delete", "grace": N, "force": B}.
 * Anything else is Python's to answer. */
static int parse_delete(const char *msg, long long *grace)
{
    static const char head[] = "{\"op\": \"delete\", \"grace\": ";
    const char *end;

    if (strncmp(msg, head, sizeof(head) - 1) != 0 ||
        !parse_number(msg + sizeof(head) - 1, &end, LLONG_MAX, grace))
        return 0;
    if (*grace > MAX_GRACE)
        *grace = MAX_GRACE;
    return strcmp(end, ", \"force\": false}") == 0 || strcmp(end, ", \"force\": true}") == 0;
}

static void send_text(int fd, const char *text)
{
    while (send(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno == EINTR)
        ;
}

static void drop_client(struct client *c)
{
    close(c->fd);
    c->fd = -1;
    c->state = FREE;
}

/* A delete (docs/lifecycle.md, Termination 3-4 without preStop): each container's stop signal
 * now, SIGKILL at max(G, SIGTERM + 2 s). A later one may only bring SIGKILL forward. */
static void begin_ending(const struct plan *p, long long grace)
{
    int64_t now = monotonic_ns(), kill_at;
    int i;

    if (!ending.begun) {
        ending.begun = 1;
        ending.term_at = now;
        ending.kill_at = now + grace * 1000000000LL;
        if (ending.kill_at < now + KILL_MIN_GAP_NS)
            ending.kill_at = now + KILL_MIN_GAP_NS;
        for (i = 0; i < p->nstops; i++)
            if (!exited(p->stops[i].pid))
                kill(p->stops[i].pid, p->stops[i].sig);  /* our unreaped child: never a recycled PID */
        return;
    }
    kill_at = now + grace * 1000000000LL;
    if (kill_at < ending.term_at + KILL_MIN_GAP_NS)
        kill_at = ending.term_at + KILL_MIN_GAP_NS;
    if (!ending.killed && kill_at < ending.kill_at)
        ending.kill_at = kill_at;
}

/* A connection has something to say (or hung up). Returns 1 if Python must answer it. */
static int on_client(const struct plan *p, struct client *c)
{
    char buf[512];
    long long grace = 0;
    ssize_t n = recv(c->fd, buf, sizeof(buf) - 1, MSG_PEEK | MSG_DONTWAIT);

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        drop_client(c);     /* a CLI that left: `delete --wait=false`, or killed */
        return 0;
    }
    buf[n] = '\0';
    if (c->state == DELETING || parse_delete(buf, &grace)) {
        recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);     /* the request, taken off now */
        if (c->state == DELETING)
            return 0;       /* nothing more is asked of a deleting CLI */
        send_text(c->fd, "{\"ok\": true}");
        c->state = DELETING;
        begin_ending(p, grace);
        return 0;
    }
    if (!ending.begun)
        return 1;           /* still unread: Python gets the connection ("accepted:FD") */
    /* While the pod ends, nothing else can be done with it. */
    recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    send_text(c->fd, "{\"error\": \"the pod is being deleted\"}");
    drop_client(c);
    return 0;
}

static void accept_client(int listener)
{
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), k;

    if (fd < 0)
        return;
    for (k = 0; k < MAX_CLIENTS; k++)
        if (clients[k].state == FREE) {
            clients[k].fd = fd;
            clients[k].state = ASKING;
            return;
        }
    close(fd);              /* not reached: the listener is polled only with a free slot */
}

/* What the pipes still hold, into the logs, without waiting (a process that outlived its
 * container's main process may keep a pipe open). */
static void drain_logs(const struct plan *p)
{
    int i;

    for (i = 0; i < p->nstreams; i++) {
        struct stream *s = &p->streams[i];
        struct pollfd pfd = {.fd = s->pipe_fd, .events = POLLIN};
        int rounds = 64;    /* at most 4 MiB: a writer that keeps going is killed by the teardown */

        while (!s->ended && rounds-- > 0 && poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN) && copy_once(s))
            ;
        flush_pending(s);
    }
}

/* Every container has exited (or SIGKILL went KILL_WAIT_NS ago): give the watcher's control
 * socket, its lock and the host netns to a deleting CLI, which tears the pod down
 * (nsbox/deletion.py, termination.py), and end. Nobody to take them: Python finishes. */
static void hand_over(const struct plan *p)
{
    static const char msg[] = "{\"teardown\": true}";
    int fds[3] = {p->end_listener, p->end_lock, p->end_netns}, k;
    size_t nfds = p->end_netns >= 0 ? 3 : 2;
    union {
        char buf[CMSG_SPACE(sizeof(fds))];
        struct cmsghdr align;
    } ctl;

    drain_logs(p);
    for (k = 0; k < MAX_CLIENTS; k++) {
        struct iovec iov = {.iov_base = (void *)msg, .iov_len = sizeof(msg) - 1};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                            .msg_controllen = CMSG_SPACE(nfds * sizeof(int))};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

        if (clients[k].state != DELETING)
            continue;
        memset(ctl.buf, 0, sizeof(ctl.buf));
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
        if (sendmsg(clients[k].fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)(sizeof(msg) - 1))
            _exit(0);       /* our children are zombies or dying: init reaps them */
        drop_client(&clients[k]);
    }
    wake(p);
}

/* While the pod ends: SIGKILL when due, the hand-over when every container is gone. */
static void carry_on_ending(const struct plan *p, int64_t now)
{
    int i;

    if (all_exited(p) || (ending.killed && now >= ending.kill_at))
        hand_over(p);
    if (!ending.killed && now >= ending.kill_at) {
        for (i = 0; i < p->nstops; i++)
            if (!exited(p->stops[i].pid))
                kill(p->stops[i].pid, SIGKILL);
        ending.killed = 1;
        ending.kill_at = now + KILL_WAIT_NS;
    }
}

/* A log pipe had an event: copy it; 1 if it ended (its container's output is complete). */
static int on_stream(struct stream *s, short ev)
{
    if ((ev & POLLIN) && copy_once(s))
        return 0;
    return ev != 0;         /* the end, or POLLHUP/POLLERR with nothing left to read */
}

/* After a poll: copy what the log pipes hold, answer what --end lets us answer;
 * 1 if anything asks for PROGRAM. */
static int handle_events(struct plan *p, struct pollfd *fds)
{
    int i, k, woken = 0, base = 1 + p->nwake + p->nstreams;

    if (fds[0].revents) {
        if (!ending.begun)
            woken = 1;
        else {              /* the exits are looked at with waitid: only empty the signalfd */
            struct signalfd_siginfo si;
            while (read(fds[0].fd, &si, sizeof(si)) > 0)
                ;
        }
    }
    for (i = 0; i < p->nwake; i++) {
        if (!fds[1 + i].revents)
            continue;
        if (fds[1 + i].fd == p->end_listener)
            accept_client(p->end_listener);
        else
            woken = 1;
    }
    for (i = 0; i < p->nstreams; i++) {
        struct pollfd *f = &fds[1 + p->nwake + i];
        if (!on_stream(&p->streams[i], f->revents))
            continue;
        if (!ending.begun) {
            woken = 1;
        } else {            /* a container ended: its output is complete */
            flush_pending(&p->streams[i]);
            p->streams[i].ended = 1;
            f->fd = -1;
        }
    }
    for (k = 0; k < MAX_CLIENTS; k++)
        if (clients[k].state != FREE && fds[base + k].revents)
            woken |= on_client(p, &clients[k]);
    return woken;
}

static void __attribute__((noreturn)) idle(struct plan *p)
{
    int base = 1 + p->nwake + p->nstreams, nfds = base + MAX_CLIENTS, i, k;
    struct pollfd *fds = calloc((size_t)nfds, sizeof(*fds));
    int64_t next_check = p->check_path ? 0 : NEVER;  /* 0: at once, the state may be gone already */
    int chld_fd;

    for (k = 0; k < MAX_CLIENTS; k++)
        clients[k].fd = -1;
    /* Blocked before the look at the children: no exit can fall between the two. */
    chld_fd = watch_children();
    if (chld_fd < 0 || !fds) {
        fprintf(stderr, "nsbox-idle: cannot watch the children: %s\n", strerror(errno));
        wake(p);
    }
    if (child_exited())
        wake(p);
    fds[0].fd = chld_fd;
    for (i = 0; i < p->nwake; i++)
        fds[1 + i].fd = p->wake_fds[i];
    for (i = 0; i < p->nstreams; i++)
        fds[1 + p->nwake + i].fd = p->streams[i].pipe_fd;
    for (i = 0; i < nfds; i++)
        fds[i].events = POLLIN;

    for (;;) {
        int64_t now = monotonic_ns(), until;
        struct timespec ts, *timeout = NULL;
        int free_slot = 0;

        if (ending.begun) {
            carry_on_ending(p, now);
            until = ending.kill_at;     /* the exits themselves come as SIGCHLD */
        } else {
            if (now >= p->wake_at)
                wake(p);
            if (run_probes(p, now))
                wake(p);
            if (now >= next_check) {
                if (state_vanished(p->check_path))
                    wake(p);
                next_check = now + CHECK_EVERY_NS;
            }
            until = p->wake_at < next_check ? p->wake_at : next_check;
            if (next_probe(p) < until)
                until = next_probe(p);
        }
        if (until != NEVER) {
            ts.tv_sec = (until - now) / 1000000000LL;
            ts.tv_nsec = (until - now) % 1000000000LL;
            timeout = &ts;
        }
        for (k = 0; k < MAX_CLIENTS; k++) {
            fds[base + k].fd = clients[k].fd;
            free_slot |= clients[k].state == FREE;
        }
        for (i = 0; i < p->nwake; i++)  /* more connections wait in the backlog until a slot frees */
            if (p->wake_fds[i] == p->end_listener)
                fds[1 + i].fd = free_slot ? p->end_listener : -1;
        if (ppoll(fds, (nfds_t)nfds, timeout, NULL) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "nsbox-idle: poll: %s\n", strerror(errno));
            wake(p);
        }
        if (handle_events(p, fds))
            wake(p);
    }
}

int main(int argc, char **argv)
{
    struct plan plan;

    if (argc < 1)
        bad_usage("no arguments at all");
    memset(&plan, 0, sizeof(plan));
    parse_args(argc, argv, &plan);
    prctl(PR_SET_NAME, argv[0], 0, 0, 0);
    idle(&plan);
}
