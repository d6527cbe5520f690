/* nsbox-idle: a pod's watcher while nothing happens.
 *
 *   nsbox-idle [--wake-on FD]... [--log PIPE_FD:LOG_FD:STREAM]... [--wake-at NS]
 *              [--check PATH] [--probe SPEC]... -- PROGRAM [ARG...]
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

static void parse_args(int argc, char **argv, struct plan *p)
{
    int i;

    /* Each option takes one value: there are fewer of each than argc. */
    p->wake_fds = calloc((size_t)argc, sizeof(*p->wake_fds));
    p->streams = calloc((size_t)argc, sizeof(*p->streams));
    p->probes = calloc((size_t)argc, sizeof(*p->probes));
    if (!p->wake_fds || !p->streams || !p->probes)
        bad_usage("out of memory");
    p->wake_at = NEVER;
    for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i += 2) {
        const char *opt = argv[i], *val = argv[i + 1], *end;
        long long ns;

        if (strcmp(opt, "--wake-on") != 0 && strcmp(opt, "--log") != 0 &&
            strcmp(opt, "--wake-at") != 0 && strcmp(opt, "--check") != 0 &&
            strcmp(opt, "--probe") != 0)
            bad_usage("unknown option %s", opt);
        if (!val || strcmp(val, "--") == 0)
            bad_usage("%s needs a value", opt);
        if (strcmp(opt, "--wake-on") == 0) {
            parse_wake_on(val, p);
        } else if (strcmp(opt, "--log") == 0) {
            parse_log(val, p);
        } else if (strcmp(opt, "--probe") == 0) {
            parse_probe(val, p);
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

/* PROGRAM's argv: the given one, then each probe's state "ID:NEXT_NS:REPORTED:LAST:RUN:OUTCOME".
 * Without memory for it, the given one: Python then counts from what it handed over. */
static char **program_argv(const struct plan *p)
{
    char **argv;
    int n = 0, i;

    if (p->nprobes == 0)
        return p->program;
    while (p->program[n])
        n++;
    argv = calloc((size_t)(n + p->nprobes + 1), sizeof(*argv));
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
        argv[n + i] = arg;
    }
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

/* After a poll: copy what the log pipes hold; 1 if anything asks for PROGRAM. */
static int handle_events(const struct plan *p, const struct pollfd *fds)
{
    int i, woken = fds[0].revents != 0;

    for (i = 0; i < p->nwake; i++)
        woken |= fds[1 + i].revents != 0;
    for (i = 0; i < p->nstreams; i++) {
        short ev = fds[1 + p->nwake + i].revents;
        if (ev & POLLIN)
            woken |= !copy_once(&p->streams[i]);
        else if (ev)
            woken = 1;              /* POLLHUP or POLLERR with nothing left to read */
    }
    return woken;
}

static void __attribute__((noreturn)) idle(struct plan *p)
{
    int nfds = 1 + p->nwake + p->nstreams, i;
    struct pollfd *fds = calloc((size_t)nfds, sizeof(*fds));
    int64_t next_check = p->check_path ? 0 : NEVER;  /* 0: at once, the state may be gone already */
    int chld_fd;

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
        if (until != NEVER) {
            ts.tv_sec = (until - now) / 1000000000LL;
            ts.tv_nsec = (until - now) % 1000000000LL;
            timeout = &ts;
        }
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
