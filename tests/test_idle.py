"""nsbox-idle (csrc/idle.c) on its own, no pods: the program a quiet pod's watcher execs.

nsbox-idle runs with PROGRAM = a small reporter that writes down what it found
after the exec, from inside the same process: its PID, its descriptors, its
signal mask and pending signals, and the child it could reap. The log records
are compared with what nsbox.logs.StreamWriter writes for the same reads.
Every process is killed by PID and reaped whatever happens; every wait is a
poll with a deadline.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest
from conftest import wait_for

from nsbox import logs, native
from nsbox.logs import MAX_LINE

DEADLINE = 10.0  # generous: the machine may be loaded
TITLE = "nsbox-watch default/web"  # argv[0], the title the watcher chooses
IDLE_EXE = os.path.realpath(native.IDLE_PROGRAM)
SIGCHLD_BIT = 1 << (signal.SIGCHLD - 1)
STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")

# PROGRAM of every test: writes a JSON report (atomically: the test polls for the file).
REPORTER = r"""
import time
mono = time.monotonic_ns()
import json, os, sys
path, reap = sys.argv[1], sys.argv[2] == "reap"
status = {}
with open("/proc/self/status") as f:
    for line in f:
        key, _, value = line.partition(":")
        status[key] = value.strip()
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink("/proc/self/fd/" + fd)
    except OSError:
        pass                       # the listing's own descriptor, closed by now
child = None
if reap:
    info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
    child = [info.si_pid, info.si_status] if info else None
report = {"pid": os.getpid(), "mono": mono, "fds": fds, "child": child, "argv": sys.argv[3:],
          "mask": {k: int(status[k], 16) for k in ("SigBlk", "SigPnd", "ShdPnd")}}
with open(path + ".tmp", "w") as f:
    json.dump(report, f)
os.rename(path + ".tmp", path)
"""

# Gives nsbox-idle a child (argv: MODE GATE_FD IDLE ARGV...), prints the child's PID, execs nsbox-idle.
#  later:  SIGCHLD blocked first; the child exits when the test closes the other end of GATE_FD.
#  before: the child exits at once and is a zombie before the exec; its SIGCHLD (default
#          disposition, not blocked) was discarded, so only a look at the children finds it.
WITH_CHILD = r"""
import os, signal, sys
mode, gate = sys.argv[1], int(sys.argv[2])
if mode == "later":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
pid = os.fork()
if pid == 0:
    if mode == "later":
        os.read(gate, 1)
    os._exit(7)
os.close(gate)
if mode == "before":
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
os.write(1, b"%d\n" % pid)
os.execv(sys.argv[3], sys.argv[4:])
"""

# Ignores and blocks a few signals, prints its own mask lines, execs nsbox-idle (argv: IDLE ARGV...).
WITH_SIGNALS = r"""
import os, signal, sys
for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
    signal.signal(sig, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
with open("/proc/self/status") as f:
    os.write(1, b"".join(l.encode() for l in f if l.startswith(("SigBlk", "SigIgn"))))
os.execv(sys.argv[1], sys.argv[2:])
"""


# ---- helpers -------------------------------------------------------------


def idle_argv(report, *options: str, reap: bool = False) -> list[str]:
    return [TITLE, *options, "--", sys.executable, "-I", "-S", "-c", REPORTER, str(report), "reap" if reap else "-"]


@pytest.fixture(autouse=True)
def idle_program_built():
    assert os.access(native.IDLE_PROGRAM, os.X_OK), (
        f"{native.IDLE_PROGRAM} is missing: python setup.py build_ext --inplace"
    )


@pytest.fixture
def spawn():
    """Starts processes (nsbox-idle by default); kills by PID and reaps what is left."""
    procs: list[subprocess.Popen] = []

    def start(argv: list[str], executable: str = native.IDLE_PROGRAM, pass_fds=()) -> subprocess.Popen:
        p = subprocess.Popen(
            argv,
            executable=executable,
            pass_fds=pass_fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=DEADLINE)
        p.stdout.close()
        p.stderr.close()


def exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:  # exited
        return None


def idling(pid: int) -> bool:
    """nsbox-idle, past its start (comm set), asleep: in its poll."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().rstrip("\n")
    except OSError:
        return False
    return exe(pid) == IDLE_EXE and comm == TITLE[:15] and stat.rsplit(")", 1)[1].split()[0] == "S"


def wait_idling(p: subprocess.Popen) -> None:
    wait_for(lambda: idling(p.pid), timeout=DEADLINE, what=f"nsbox-idle {p.pid} to wait")


def woken(p: subprocess.Popen, report) -> dict:
    """What PROGRAM found, once nsbox-idle exec'd it and it exited."""
    wait_for(lambda: os.path.exists(report), timeout=DEADLINE, what="nsbox-idle to exec its program")
    assert p.wait(timeout=DEADLINE) == 0, p.stderr.read()
    with open(report) as f:
        return json.load(f)


def fd_target(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def unread(fd: int) -> int:
    """Bytes waiting in a pipe."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]


def records(path) -> list[tuple[bytes, bytes, bytes]]:
    """(stream, tag, content) of each record of a log file, timestamps checked.
    Split on b"\\n" only: content may hold any other byte, b"\\r" included."""
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n")
    result = []
    for line in data.split(b"\n")[:-1]:
        stamp, stream, tag, content = line.split(b" ", 3)
        assert STAMP.match(stamp), stamp
        result.append((stream, tag, content))
    return result


def rendered(recs: list[tuple[bytes, bytes, bytes]], stream: bytes) -> bytes:
    """A stream's output as `logs` shows it: partial records joined with what follows."""
    return b"".join(content + (b"\n" if tag == b"F" else b"") for s, tag, content in recs if s == stream)


class Logs:
    """Container output pipes (read ends non-blocking, as the watcher's) into one log file,
    plus a pipe to wake nsbox-idle with."""

    def __init__(self, tmp_path, streams=("stdout",)):
        self.path = tmp_path / "c.log"
        self.log = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.pipes = {}
        for name in streams:
            r, w = os.pipe()
            os.set_blocking(r, False)
            self.pipes[name] = (r, w)
        self.wake_r, self.wake_w = os.pipe()

    def options(self) -> list[str]:
        opts = ["--wake-on", str(self.wake_r)]
        for name, (r, _) in self.pipes.items():
            opts += ["--log", f"{r}:{self.log}:{name}"]
        return opts

    def fds(self) -> tuple[int, ...]:
        return (self.log, self.wake_r, *(r for r, _ in self.pipes.values()))

    def feed(self, data: bytes, stream: str = "stdout") -> None:
        """Write data and wait until nsbox-idle has read it: one chunk, one read."""
        r, w = self.pipes[stream]
        os.write(w, data)
        wait_for(lambda: unread(r) == 0, timeout=DEADLINE, what="nsbox-idle to read the pipe")

    def wake(self) -> None:
        os.write(self.wake_w, b"!")

    def close(self) -> None:
        for fd in (self.log, self.wake_r, self.wake_w, *(fd for pair in self.pipes.values() for fd in pair)):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def container_logs(tmp_path):
    lg = Logs(tmp_path)
    yield lg
    lg.close()


def expected_records(tmp_path, chunks: list[bytes]) -> list[tuple[bytes, bytes, bytes]]:
    """What StreamWriter writes for the same reads, then a flush (the reference)."""
    path = tmp_path / "expected.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        writer = logs.StreamWriter(fd, "stdout")
        for chunk in chunks:
            writer.feed(chunk)
        writer.flush()
    finally:
        os.close(fd)
    return records(path)


# ---- waking and exec'ing -------------------------------------------------


def test_a_readable_wake_on_fd_execs_the_program_in_the_same_process_with_the_fds_kept(spawn, tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    kept_r, kept_w = os.pipe()
    try:
        listener.bind(str(tmp_path / "control.sock"))
        listener.listen()
        fd = listener.fileno()
        report = tmp_path / "report"
        p = spawn(idle_argv(report, "--wake-on", str(fd)), pass_fds=(fd, kept_r))
        wait_idling(p)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(tmp_path / "control.sock"))
            found = woken(p, report)
        assert found["pid"] == p.pid
        assert found["fds"][str(fd)] == fd_target(fd)
        assert found["fds"][str(kept_r)] == fd_target(kept_r)
        # its own signalfd was close-on-exec; SIGCHLD is still blocked
        assert not [t for t in found["fds"].values() if "signalfd" in t]
        assert found["mask"]["SigBlk"] & SIGCHLD_BIT
    finally:
        listener.close()
        os.close(kept_r)
        os.close(kept_w)


def test_a_pidfd_wakes_it_when_that_process_exits(spawn, tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    pidfd = os.pidfd_open(sleeper.pid)
    try:
        report = tmp_path / "report"
        p = spawn(idle_argv(report, "--wake-on", str(pidfd)), pass_fds=(pidfd,))
        wait_idling(p)
        sleeper.kill()
        assert woken(p, report)["fds"][str(pidfd)] == fd_target(pidfd)
    finally:
        sleeper.kill()
        sleeper.wait()
        os.close(pidfd)


def test_wake_at_wakes_it_then_and_not_before(spawn, tmp_path):
    report = tmp_path / "report"
    wake_at = time.monotonic_ns() + 300_000_000
    p = spawn(idle_argv(report, "--wake-at", str(wake_at)))
    limit = time.monotonic() + DEADLINE
    while not os.path.exists(report):
        seen = exe(p.pid)
        seen_by = time.monotonic_ns()
        # it had exec'd PROGRAM by seen_by at the latest
        assert seen in (IDLE_EXE, None) or seen_by >= wake_at, f"woke {(wake_at - seen_by) / 1e6:.0f} ms early"
        assert time.monotonic() < limit, "nsbox-idle did not wake"
        time.sleep(0.01)
    assert woken(p, report)["mono"] >= wake_at


def test_a_wake_at_in_the_past_wakes_it_at_once(spawn, tmp_path):
    report = tmp_path / "report"
    p = spawn(idle_argv(report, "--wake-at", str(time.monotonic_ns() - 1_000_000_000)))
    assert woken(p, report)["pid"] == p.pid


def start_with_child(spawn, tmp_path, mode: str):
    """nsbox-idle with a child of its own; (process, child PID, the gate's write end)."""
    gate_r, gate_w = os.pipe()
    report = tmp_path / "report"
    try:
        p = spawn(
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                WITH_CHILD,
                mode,
                str(gate_r),
                native.IDLE_PROGRAM,
                *idle_argv(report, reap=True),
            ],
            executable=sys.executable,
            pass_fds=(gate_r,),
        )
    finally:
        os.close(gate_r)
    child = int(p.stdout.readline())
    return p, child, gate_w, report


def test_a_child_exit_wakes_it_with_sigchld_still_pending_and_the_zombie_left_to_reap(spawn, tmp_path):
    p, child, gate_w, report = start_with_child(spawn, tmp_path, "later")
    try:
        wait_idling(p)
        assert exe(child)  # alive: nothing woke nsbox-idle yet
        os.close(gate_w)  # the child exits
        gate_w = -1
        found = woken(p, report)
    finally:
        if gate_w >= 0:
            os.close(gate_w)
    assert found["mask"]["SigBlk"] & SIGCHLD_BIT
    assert (found["mask"]["SigPnd"] | found["mask"]["ShdPnd"]) & SIGCHLD_BIT
    assert found["child"] == [child, 7]  # PROGRAM reaped it: nsbox-idle had not


def test_a_child_that_exited_before_it_started_wakes_it_at_once(spawn, tmp_path):
    p, child, gate_w, report = start_with_child(spawn, tmp_path, "before")
    os.close(gate_w)
    found = woken(p, report)  # no wake source given: only the child
    assert not (found["mask"]["SigPnd"] | found["mask"]["ShdPnd"]) & SIGCHLD_BIT
    assert found["child"] == [child, 7]


def test_signals_keep_their_dispositions_and_only_sigchld_is_added_to_the_mask(spawn, tmp_path):
    p = spawn(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            WITH_SIGNALS,
            native.IDLE_PROGRAM,
            TITLE,
            "--wake-at",
            "0",
            "--",
            "/bin/cat",
            "/proc/self/status",
        ],
        executable=sys.executable,
    )
    out, _ = p.communicate(timeout=DEADLINE)
    assert p.returncode == 0
    before, after = {}, {}
    for line in out.decode().splitlines():
        key, _, value = line.partition(":")
        if key in ("SigBlk", "SigIgn"):
            (after if key in before else before)[key] = int(value, 16)
    assert before["SigIgn"] & (1 << (signal.SIGHUP - 1)) and before["SigBlk"] & (1 << (signal.SIGUSR1 - 1))
    assert after["SigIgn"] == before["SigIgn"]
    assert after["SigBlk"] == before["SigBlk"] | SIGCHLD_BIT


def test_a_vanished_state_path_wakes_it(spawn, tmp_path):
    state = tmp_path / "pod.json"
    state.write_text("{}")
    report = tmp_path / "report"
    p = spawn(idle_argv(report, "--check", str(state)))
    wait_idling(p)
    stay_until = time.monotonic() + 2.5  # past one check: the file is there, it stays
    while time.monotonic() < stay_until:
        assert exe(p.pid) == IDLE_EXE
        time.sleep(0.05)
    state.unlink()
    woken(p, report)  # checked every 2 s: well within DEADLINE


# ---- copying logs ----------------------------------------------------------

CHUNKS = [
    b"one\ntwo\n",
    b"\n\n",  # empty lines
    b"no newline yet",  # waits for the rest
    b", now it ends\nand another starts",
    b"x" * 20000 + b"\nafter a long line\nand one more\n",  # complete lines are not held back
    b"y" * MAX_LINE + b"\n",  # exactly MAX_LINE: one full record
    b"z" * (MAX_LINE + 1) + b"\n",  # one byte over: P, then F
    b"\x00\xff\x1b[31mcolour\x1b[0m\r\n\x80\x81 ",  # any byte but the newline is content
    b"w" * 50000,  # partial records; the rest waits
    b"v" * 15000 + b"\nend",
]


def test_log_records_are_stream_writers_for_the_same_reads(spawn, tmp_path, container_logs):
    report = tmp_path / "report"
    p = spawn(idle_argv(report, *container_logs.options()), pass_fds=container_logs.fds())
    wait_idling(p)
    for chunk in CHUNKS:
        container_logs.feed(chunk)
    container_logs.wake()
    woken(p, report)
    assert records(container_logs.path) == expected_records(tmp_path, CHUNKS)


def test_records_of_one_read_share_one_timestamp(spawn, tmp_path, container_logs):
    report = tmp_path / "report"
    p = spawn(idle_argv(report, *container_logs.options()), pass_fds=container_logs.fds())
    container_logs.feed(b"a\nb\nc\n")
    container_logs.feed(b"d\n")
    container_logs.wake()
    woken(p, report)
    with open(container_logs.path, "rb") as f:
        stamps = [line.split(b" ", 1)[0] for line in f.read().split(b"\n")[:-1]]
    assert len(stamps) == 4 and len(set(stamps[:3])) == 1 and stamps[3] >= stamps[2]


def test_a_flood_on_two_streams_sharing_a_log_comes_out_intact(spawn, tmp_path):
    rnd = random.Random(1)
    no_newline = bytes(b"ab \r\x00\xff"[i % 6] for i in range(256))  # random bytes, newlines apart
    data = {}
    for name in ("stdout", "stderr"):
        lines = [rnd.randbytes(rnd.choice([0, 1, 80, 5000, MAX_LINE, 40000])).translate(no_newline) for _ in range(60)]
        data[name] = b"\n".join(lines) + b"tail of " + name.encode()
    lg = Logs(tmp_path, streams=("stdout", "stderr"))
    try:
        report = tmp_path / "report"
        p = spawn(idle_argv(report, *lg.options()), pass_fds=lg.fds())
        writers = [
            threading.Thread(target=os.write, args=(lg.pipes[name][1], data[name]), daemon=True) for name in data
        ]
        for t in writers:
            t.start()
        for t in writers:
            t.join(timeout=DEADLINE)
        assert not any(t.is_alive() for t in writers), "nsbox-idle stopped reading"
        for r, _ in lg.pipes.values():
            wait_for(lambda: unread(r) == 0, timeout=DEADLINE, what="nsbox-idle to read the pipes")
        lg.wake()
        woken(p, report)
        recs = records(lg.path)
    finally:
        lg.close()
    assert all(len(content) <= MAX_LINE for _, _, content in recs)
    for name in data:
        assert rendered(recs, name.encode()) == data[name]


def test_pending_output_is_written_as_one_partial_record_at_wake(spawn, tmp_path):
    lg = Logs(tmp_path, streams=("stdout", "stderr"))
    try:
        report = tmp_path / "report"
        p = spawn(idle_argv(report, *lg.options()), pass_fds=lg.fds())
        lg.feed(b"half a ", "stdout")
        lg.feed(b"line", "stdout")
        lg.feed(b"err", "stderr")
        assert os.path.getsize(lg.path) == 0  # nothing complete yet
        lg.wake()
        woken(p, report)
        assert records(lg.path) == [(b"stdout", b"P", b"half a line"), (b"stderr", b"P", b"err")]
    finally:
        lg.close()


def test_the_end_of_a_log_pipe_wakes_it_and_the_pipe_stays_open_for_the_program(spawn, tmp_path, container_logs):
    report = tmp_path / "report"
    p = spawn(idle_argv(report, *container_logs.options()), pass_fds=container_logs.fds())
    r, w = container_logs.pipes["stdout"]
    container_logs.feed(b"last words")
    os.close(w)
    found = woken(p, report)
    assert records(container_logs.path) == [(b"stdout", b"P", b"last words")]
    assert found["fds"][str(r)] == fd_target(r)


# ---- the command line and the process -----------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        ["--wake-at", "5"],  # no --
        ["--"],  # no PROGRAM
        ["--bogus", "1", "--", "/bin/true"],
        ["--wake-on", "--", "/bin/true"],  # no value
        ["--wake-on", "x", "--", "/bin/true"],
        ["--wake-on", "999", "--", "/bin/true"],  # not open
        ["--log", "0:1", "--", "/bin/true"],
        ["--log", "0:1:stdin", "--", "/bin/true"],
        ["--log", "0:999:stdout", "--", "/bin/true"],
        ["--wake-at", "-5", "--", "/bin/true"],
        ["--wake-at", "1", "--wake-at", "2", "--", "/bin/true"],
        ["--", "true"],  # not an absolute path
        ["--probe", "0:udp:0:1:1:1:1:1:0:127.0.0.1:80", "--", "/bin/true"],
        ["--probe", "0:tcp:0:1:1:1:1:1:0:localhost:80", "--", "/bin/true"],
        ["--probe", "0:tcp:0:1:1:1:3:1:0:127.0.0.1:80", "--", "/bin/true"],  # REPORTED is 0, 1 or 2
        ["--probe", "0:tcp:0:1:1:1:1:1:0:127.0.0.1:70000", "--", "/bin/true"],
        ["--probe", "0:http:0:1:1:1:1:1:0:127.0.0.1:80", "--", "/bin/true"],  # no request
        ["--stop", "1:15", "--", "/bin/true"],  # --stop without --end
        ["--end", "0:1", "--", "/bin/true"],  # LISTENER is not a --wake-on descriptor
        ["--wake-on", "0", "--end", "0", "--", "/bin/true"],  # no LOCK
        ["--wake-on", "0", "--end", "0:1:999", "--", "/bin/true"],  # NETNS not open
        ["--wake-on", "0", "--end", "0:1", "--stop", "0:15", "--", "/bin/true"],  # PID 0
        ["--wake-on", "0", "--end", "0:1", "--stop", "1:65", "--", "/bin/true"],  # no such signal
    ],
)
def test_bad_arguments_exit_2_with_one_line(options):
    p = subprocess.run(
        [TITLE, *options],
        executable=native.IDLE_PROGRAM,
        capture_output=True,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 2
    assert p.stdout == b""
    assert p.stderr.startswith(b"nsbox-idle: ") and p.stderr.count(b"\n") == 1, p.stderr


def test_a_program_that_cannot_be_executed_exits_127_with_the_reason():
    p = subprocess.run(
        [TITLE, "--wake-at", "0", "--", "/nonexistent/watcher"],
        executable=native.IDLE_PROGRAM,
        capture_output=True,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 127
    assert p.stderr == b"nsbox-idle: exec /nonexistent/watcher: No such file or directory\n"


# ---- probes (--probe) ---------------------------------------------------------


@pytest.fixture
def http_server():
    """A local HTTP server answering GET with `status[0]`; `paths` lists what it was asked."""
    import http.server

    status, paths = [200], []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            paths.append((self.path, self.headers.get("User-Agent")))
            self.send_response(status[0])
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], status, paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=DEADLINE)


REQUEST = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: kube-probe/1.32\r\nConnection: close\r\n\r\n"


def probe_arg(index: int, kind: str, port: int, reported: int = 1, last: int = 2, run: int = 0) -> str:
    """--probe SPEC: due now, every 50 ms, 2 s timeout, successThreshold 1."""
    spec = f"{index}:{kind}:{time.monotonic_ns()}:50000000:2000000000:1:{reported}:{last}:{run}:127.0.0.1:{port}"
    return spec + (f":{REQUEST}" if kind == "http" else "")


def probe_states(report: dict) -> dict[str, list[str]]:
    """ID -> [NEXT_NS, REPORTED, LAST, RUN, OUTCOME], from the arguments PROGRAM got."""
    return {a.split(":", 1)[0]: a.split(":", 5)[1:] for a in report["argv"]}


def closed_port() -> int:
    """A port nothing listens on (bound, not listening: a connect is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_probes_that_succeed_are_counted_without_waking_it(spawn, tmp_path, http_server):
    port, _, paths = http_server
    report = tmp_path / "report"
    wake_at = time.monotonic_ns() + 1_000_000_000
    options = ["--probe", probe_arg(0, "http", port), "--probe", probe_arg(1, "tcp", port)]
    p = spawn(idle_argv(report, *options, "--wake-at", str(wake_at)))
    got = woken(p, report)
    assert got["mono"] >= wake_at  # woken by --wake-at, not by a probe
    states = probe_states(got)
    assert set(states) == {"0", "1"}
    next_ns, reported, last, run, outcome = states["0"]
    assert (reported, last, outcome) == ("1", "1", "")
    assert int(run) >= 5 and int(next_ns) > got["mono"] - 100_000_000
    assert len(paths) >= int(run) and set(paths) == {("/healthz", "kube-probe/1.32")}
    assert states["1"][1:3] == ["1", "1"] and int(states["1"][3]) >= 5 and states["1"][4] == ""


@pytest.mark.parametrize(
    ("kind", "code", "reported", "outcome"),
    [
        ("http", 503, 1, "fail status=503"),
        ("http", 302, 1, "redirect"),  # Python follows redirects
        ("http", 200, 0, "ok"),  # a success that turns readiness: Python records it
        ("tcp", None, 1, f"fail errno={errno.ECONNREFUSED}"),
    ],
)
def test_a_result_that_needs_python_wakes_it_with_the_outcome_uncounted(
    spawn, tmp_path, http_server, kind, code, reported, outcome
):
    port, status, _ = http_server
    if code is not None:
        status[0] = code
    else:
        port = closed_port()
    report = tmp_path / "report"
    p = spawn(idle_argv(report, "--probe", probe_arg(3, kind, port, reported=reported, last=1, run=4)))
    states = probe_states(woken(p, report))
    assert states["3"][1:] == [str(reported), "1", "4", outcome]  # the counts as before the result


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_idling_it_is_small_and_titled_by_argv0(spawn, tmp_path, container_logs):
    report = tmp_path / "report"
    argv = idle_argv(report, *container_logs.options())
    p = spawn(argv, pass_fds=container_logs.fds())
    for chunk in CHUNKS:  # its buffers have been used
        container_logs.feed(chunk)
    wait_idling(p)
    assert rss_kib(p.pid) < 2048, f"nsbox-idle RSS {rss_kib(p.pid)} KiB"
    with open(f"/proc/{p.pid}/comm") as f:
        assert f.read() == TITLE[:15] + "\n"
    with open(f"/proc/{p.pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:-1] == [a.encode() for a in argv]
    container_logs.wake()
    woken(p, report)
