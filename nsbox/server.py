"""The warm command server (docs/design.md §11): a CPython with every module of nsbox
already imported, which runs each command it is handed in a fork of itself.

nsbox/client.py is the other half. The server listens on `<dir>/<name>.sock` (dir:
$NSBOX_SERVER_DIR or /run/nsbox-server, root's alone; name: a checksum of the client's
`identity()`), takes `<name>.lock` for its life and keeps a short log in `<name>.log`. It
keeps one spare fork waiting in accept(), made before the command comes. The spare takes a
connection from root (SO_PEERCRED) and hands it to the server, which forks the next spare;
it is the command's worker now: it reads the command and the caller's descriptors 0-2 and
working directory, takes on the caller's environment, umask, limits, priority, CPU set and
signal dispositions, says `ok PID`, runs `cli.run` as the command's own process would, and
says `exit STATUS` (the server says it, when it reaps a worker that died without saying).
A worker refuses (`no WHY`, and the client runs the command itself) a caller whose
interpreter, module path or start-up environment differ, or who lives in other namespaces
or under another root directory. The server exits when a module file it imported has
changed since (the next command runs cold, and may start a fresh server), after
$NSBOX_SERVER_IDLE seconds (default 300) without a command, and on SIGTERM (`nsbox server
stop`), letting running commands finish. Pods never depend on it: their watchers are forked
and detached as from a command run without it.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import select
import signal
import socket
import stat
import struct
import sys
import time

from nsbox import client
from nsbox.record import record

IDLE_ENV = "NSBOX_SERVER_IDLE"
DEFAULT_IDLE = 300.0  # seconds without a command, then the server exits
LOG_LIMIT = 1 << 20  # bytes: the log starts again from empty beyond this
REQUEST_TIMEOUT = 10.0  # a caller that connects and says nothing gets this long
# Command lines parsed once at start-up, for the patterns they compile (parsing only).
WARM_UP = (
    ["get", "pods", "-o", "wide"],
    ["run", "--rm", "-a", "-i", "warm", "--pod", "up", "-e", "K=V", "--", "true"],
    ["delete", "pod", "warm", "--grace-period", "0"],
    ["exec", "-i", "warm", "-c", "up", "--", "true"],
    ["logs", "warm", "-c", "up", "--tail", "1"],
    ["create", "configmap", "warm", "--from-literal", "k=v"],
)
# Imported only by build steps, or run a command when imported.
NOT_PRELOADED = {"nsbox.__main__", "nsbox._native_build", "nsbox._seccomp_build", "nsbox.server"}


class Stop(Exception):
    """SIGTERM: stop taking commands, let the running ones finish."""


def paths(directory: str, name: str) -> tuple[str, str, str]:
    base = os.path.join(directory, name)
    return base + ".sock", base + ".lock", base + ".log"


def main() -> None:
    """The server process (started detached by client.Client.spawn or `nsbox server start`)."""
    directory = client.server_dir()
    ident = client.identity()
    name = client.socket_name(ident)
    sock_path, lock_path, log_path = paths(directory, name)
    try:
        make_private_dir(directory)
    except Exception:
        os._exit(1)  # no log to tell: `nsbox server start` says it
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os._exit(0)  # another server for this identity runs, or is starting
    os.utime(lock)  # clients do not start another for a few seconds (client.SPAWN_BACKOFF)
    os.ftruncate(lock, 0)
    os.write(lock, b"%d\n" % os.getpid())
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
    os.dup2(log, 2)  # sys.stderr, line-buffered, now writes the log
    os.close(log)
    try:
        import prctl

        # Before any worker changes the environment: python-prctl finds the room for a title
        # (argv and environ, contiguous at start-up) on its first use.
        prctl.set_proctitle(f"nsbox-server {sock_path}")
        prctl.set_name("nsbox-server")
        preload()
        idle = float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE)
        server = Server(sock_path, lock, ident, idle)
    except Exception as e:
        say(f"cannot start: {type(e).__name__}: {e}")
        os._exit(1)
    say(f"serving on {sock_path} (pid {os.getpid()}, idle timeout {idle:g} s)")
    try:
        server.serve()
    except Exception:
        import traceback

        say(f"failed:\n{traceback.format_exc()}")
        if server.listener.fileno() >= 0:
            server.close()
        os._exit(1)
    os._exit(0)


def control(action: str) -> str:
    """`nsbox server start|stop|status` for this command's identity; what to tell the user."""
    from nsbox.errors import NsboxError

    directory = client.server_dir()
    name = client.socket_name(client.identity())
    sock_path, lock_path, log_path = paths(directory, name)
    pid = running(lock_path)
    if action == "status" or (action == "start" and pid):
        return f"running (pid {pid}, {sock_path})" if pid else "not running"
    if action == "start":
        make_private_dir(directory)
        starter = client.Client(directory, start=True)
        starter.name = name
        starter.spawn(backoff=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sock = starter.connect(sock_path)
            if sock is not None:
                sock.close()
                return f"running (pid {running(lock_path)}, {sock_path})"
            time.sleep(0.05)
        raise NsboxError(f"the server did not start within 30 s (see {log_path})")
    if not pid:
        return "not running"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while running(lock_path) == pid:  # it lets go of the lock once it takes no more commands
        if time.monotonic() > deadline:
            raise NsboxError(f"the server (pid {pid}) did not stop within 30 s (see {log_path})")
        time.sleep(0.02)
    return f"stopped (pid {pid})"


def running(lock_path: str) -> int | None:
    """The PID of the server holding this lock, or None."""
    from nsbox.state import lock_holder

    return int(lock_holder(lock_path) or b"0") or None


def make_private_dir(directory: str) -> None:
    """The directory of the socket: root's, and no one else may write in it."""
    from nsbox.errors import NsboxError

    os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.lstat(directory)
    if st.st_uid != 0 or st.st_mode & 0o022 or not stat.S_ISDIR(st.st_mode):
        raise NsboxError(f"{directory}: not a directory that root alone can write in (the command server's)")


def preload() -> None:
    """Import every module of nsbox (so: what any command and a watcher need), once."""
    import pkgutil

    import nsbox

    for mod in pkgutil.walk_packages(nsbox.__path__, "nsbox."):
        if mod.name not in NOT_PRELOADED:
            __import__(mod.name)
    from nsbox import cli

    # Each command's parser, and the patterns argparse and the name checks compile on first use
    # (re's cache): what every fork would otherwise build again. Parsing has no side effects.
    for word in [None, *cli.MODULES]:
        cli.build_parser(word)
    for argv in WARM_UP:
        cli.check_names(cli.parse(argv))


def say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}", file=sys.stderr)


def module_files() -> dict[str, tuple[int, int, int]]:
    """What tells that an imported module changed: each file of nsbox itself (edited in place
    in a checkout), and the directory of every other module file (pip and apt replace files,
    which changes their directory): ≈ 120 stats instead of ≈ 470."""
    import nsbox

    own = os.path.dirname(nsbox.__file__) + os.sep
    watched = set()
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None)
        if path:
            watched.add(path if path.startswith(own) else os.path.dirname(path))
    files = {}
    for path in watched:
        st = os.stat(path)
        files[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return files


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop


class Server:
    def __init__(self, path: str, lock: int, ident: bytes, idle: float):
        self.path, self.lock, self.ident, self.idle = path, lock, ident, idle
        self.files = module_files()
        if os.path.exists(path):
            os.unlink(path)  # a server that died left it; the lock says none runs now
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.listener.bind(path)
        os.chmod(path, 0o600)
        self.bound = os.stat(path).st_ino  # the socket file: unlinked at the end only if still ours
        self.listener.listen(128)
        # pidfd -> (pid, connection): the forks running a command (None: one that found the server stale)
        self.workers: dict[int, tuple[int, socket.socket | None]] = {}
        self.callers: dict[int, tuple[int, int]] = {}  # connection's fd -> (pidfd, pid) of its fork
        self.spare: Spare | None = None  # the fork waiting in accept() for the next command
        self.poll = select.poll()
        signal.signal(signal.SIGTERM, _raise_stop)

    def serve(self) -> None:
        last = time.monotonic()
        try:
            self.fork_spare()
            while self.workers or time.monotonic() - last < self.idle:
                timeout = None if self.workers else max(0.0, last + self.idle - time.monotonic())
                if self.events(None if timeout is None else timeout * 1000):
                    last = time.monotonic()
            say("idle: exiting")
        except Stop:
            say("stopping")
        self.close()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while self.workers or self.spare:  # the commands under way finish, and their callers hear how
            self.events(None)

    def events(self, timeout: float | None) -> bool:
        """Handle what one poll returned; False if nothing came.

        A reaped fork's pidfd and connection are closed at once, and their numbers may come
        back with the next fork: so every event of the batch is matched against what is open
        now (a stale one is skipped), and the spare's hand-over, which turns its pidfd into a
        worker's, is read before any pidfd."""
        ready = self.poll.poll(timeout)
        spare = self.spare
        if spare is not None and any(fd == spare.hand.fileno() for fd, _ in ready):
            self.take_hand_over()
        died = False
        for fd, _ in ready:
            if fd in self.callers:  # the caller is gone
                pidfd, _pid = self.callers.pop(fd)
                self.poll.unregister(fd)
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            elif fd in self.workers:
                self.reap(fd)
            elif self.spare is not None and fd == self.spare.pidfd:
                died = True
        # Descriptors are closed in the loop and opened only after it, so no number in the
        # batch can name a new one.
        if died:
            self.spare_died()
        if self.spare is None and self.listener.fileno() >= 0:
            self.fork_spare()
        return bool(ready)

    def close(self) -> None:
        """No more commands: the socket is gone, and a new server may start at once. The spare
        wakes from accept() with EINVAL (the listening socket is shut down under it) and exits,
        unless it took a connection just before: that command runs, as the others do."""
        try:
            if os.stat(self.path).st_ino == self.bound:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        os.close(self.lock)

    def fork_spare(self) -> None:
        """Fork the next command's worker before the command comes: it waits in accept() itself
        and hands the connection over, so no fork of this ≈ 40 MB process is on a command's way
        (docs/design.md §11)."""
        hand, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        child = os.fork()
        if child == 0:
            hand.close()
            self.become_spare(theirs)
        theirs.close()
        self.spare = Spare(os.pidfd_open(child), child, hand)
        self.poll.register(self.spare.pidfd, select.POLLIN)
        self.poll.register(hand, select.POLLIN)

    def take_hand_over(self) -> None:
        """The spare took a connection (or found the server stale): it is a worker now. The
        next spare is forked once the batch of events is handled."""
        spare = self.spare
        assert spare is not None
        try:
            msg, fds, _, _ = socket.recv_fds(spare.hand, 16, 1, socket.MSG_DONTWAIT)
        except OSError:
            return  # nothing after all
        self.poll.unregister(spare.hand)
        if not msg:
            return  # it died without taking one: its pidfd says so
        spare.hand.close()
        self.spare = None
        conn = socket.socket(fileno=fds[0]) if msg == b"took" and fds else None
        self.workers[spare.pidfd] = (spare.pid, conn)
        if conn is None:  # "stale": a module file changed (the spare has said which)
            raise Stop
        # The caller never writes again: its end closing means it died (SIGKILL cannot be
        # forwarded), and a command whose caller was killed is killed too, as without a server.
        self.callers[conn.fileno()] = (spare.pidfd, spare.pid)
        self.poll.register(conn, select.POLLRDHUP)

    def spare_died(self) -> None:
        """The spare ended without a hand-over: the listening socket was shut down (the
        server is closing), or it was killed; a spare that failed stops the server."""
        spare = self.spare
        assert spare is not None
        self.spare = None
        self.poll.unregister(spare.pidfd)
        with contextlib.suppress(KeyError):  # already, if its end of the socket closed first
            self.poll.unregister(spare.hand)
        spare.hand.close()
        os.close(spare.pidfd)
        _, status = os.waitpid(spare.pid, 0)
        if self.listener.fileno() >= 0 and os.waitstatus_to_exitcode(status) > 0:
            say(f"the spare worker {spare.pid} failed: exiting")
            raise Stop

    def changed(self) -> str | None:
        """The first imported file that is not what the server imported."""
        for path, seen in self.files.items():
            try:
                st = os.stat(path)
            except OSError:
                return path
            if (st.st_mtime_ns, st.st_size, st.st_ino) != seen:
                return path
        return None

    def reap(self, pidfd: int) -> None:
        pid, conn = self.workers.pop(pidfd)
        self.poll.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        if conn is None:
            return
        if self.callers.pop(conn.fileno(), None):
            self.poll.unregister(conn)
        code = os.waitstatus_to_exitcode(status)
        if os.fstat(2).st_size > LOG_LIMIT:
            os.ftruncate(2, 0)
        say(f"command {pid} exited {code}")
        try:
            conn.sendall(b"exit %d\n" % code)
        except OSError:
            pass  # the caller went away
        conn.close()

    def become_spare(self, hand: socket.socket) -> None:
        """In the fork: drop the server's descriptors and handlers, wait for a caller, hand its
        connection to the server (which then forks the next spare), and run its command."""
        code = 1
        try:
            server = os.getppid()
            import prctl

            prctl.set_pdeathsig(signal.SIGKILL)  # a killed server leaves no spare taking commands
            if os.getppid() != server:
                os._exit(1)
            os.close(self.lock)
            for pidfd, (_, other) in self.workers.items():
                os.close(pidfd)
                if other is not None:
                    other.close()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            while True:
                try:
                    conn, _ = self.listener.accept()
                except OSError:
                    os._exit(0)  # shut down: the server is closing
                peer, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
                if uid == 0:
                    break
                conn.close()
            self.listener.close()
            prctl.set_pdeathsig(0)  # from here on a command, which outlives a killed server as before
            changed = self.changed()
            if changed:
                say(f"{changed} changed: exiting")
                hand.send(b"stale")
                conn.sendall(b"no stale\n")
                os._exit(0)
            socket.send_fds(hand, [b"took"], [conn.fileno()])
            hand.close()
            code = self.work(conn, peer)
        except BaseException as e:  # the server's log, not the caller's terminal
            say(f"worker: {type(e).__name__}: {e}")
        finally:
            os._exit(code)

    def work(self, conn: socket.socket, peer: int) -> int:
        """The fork that took a caller: its command's exit status."""
        code = 1
        try:
            conn.settimeout(REQUEST_TIMEOUT)
            req = Request.read(conn)
            why = req.refusal(self.ident, peer)
            if why:
                say(f"refused a command from pid {peer}: {why}")
                conn.sendall(b"no " + why.encode() + b"\n")
                os._exit(0)
            say(f"command {os.getpid()}: running")
            req.take_on()
            conn.sendall(b"ok %d\n" % os.getpid())
            code = run_command(req.argv)
            # Said here rather than when the server has reaped this fork: the kernel's teardown
            # of a copy of the server's address space takes ≈ 2 ms the caller need not wait for.
            # (A fork that dies without saying gets its status from the server.)
            try:
                conn.sendall(b"exit %d\n" % code)
            except OSError:
                pass  # the caller went away
        except EOFError:
            pass
        return code


@record
class Spare:
    """The fork waiting for the next command, and the server's end of its hand-over socket."""

    pidfd: int
    pid: int
    hand: socket.socket


def run_command(argv: list[str]) -> int:
    """`cli.run` as the console script runs it, with the exit status CPython would give."""
    from nsbox import cli

    try:
        code = cli.run(argv)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    return cli._flush(code)


class Request:
    """One command as nsbox/client.py `request()` sends it."""

    def __init__(self, fields: list[bytes], fds: list[int]):
        self.fields, self.fds = fields, fds
        n = int(fields[7])
        self.argv = [os.fsdecode(a) for a in fields[8 : 8 + n]]
        self.env = fields[8 + n :]

    @classmethod
    def read(cls, conn: socket.socket) -> Request:
        data, fds, _, _ = socket.recv_fds(conn, 65536, 8)
        if not data:
            raise EOFError  # a probe that only connected (`nsbox server start`)
        head, _, body = data.partition(b"\n")
        size = int(head)
        while len(body) < size:
            chunk = conn.recv(min(size - len(body), 1 << 20))
            if not chunk:
                raise EOFError("the caller hung up")
            body += chunk
        for fd in fds:
            os.set_inheritable(fd, False)
        return cls(body.split(b"\0"), fds)

    def refusal(self, ident: bytes, peer: int) -> str | None:
        """Why this server cannot run the command exactly as the caller would (None: it can)."""
        if self.fields[0] != client.PROTOCOL or len(self.fds) != 4:
            return "protocol"
        if self.fields[1] != ident:
            return "identity"
        for ns in ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup"):
            if os.readlink(f"/proc/{peer}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"):
                return f"{ns} namespace"
        if not os.path.samestat(os.stat(f"/proc/{peer}/root"), os.stat("/")):
            return "root directory"
        return None

    def take_on(self) -> None:
        """Become the caller: its descriptors 0-2, working directory, umask, limits, priority,
        CPU set, signal dispositions and environment."""
        for target, fd in enumerate(self.fds[:3]):
            os.dup2(fd, target)
        os.fchdir(self.fds[3])
        for fd in self.fds:
            if fd > 2:
                os.close(fd)
        os.umask(int(self.fields[2], 8))
        import resource

        numbers = [int(x) for x in self.fields[3].split()]
        for i in range(0, len(numbers), 3):
            resource.setrlimit(numbers[i], (numbers[i + 1], numbers[i + 2]))
        os.setpriority(os.PRIO_PROCESS, 0, int(self.fields[4]))
        os.sched_setaffinity(0, [int(c) for c in self.fields[5].split()])
        ignored, blocked = (int(m, 16) for m in self.fields[6].split())
        for sig in signal.valid_signals():
            if sig in (signal.SIGKILL, signal.SIGSTOP):
                continue
            if ignored & (1 << (sig - 1)):
                signal.signal(sig, signal.SIG_IGN)
            elif sig == signal.SIGINT:
                signal.signal(sig, signal.default_int_handler)
            elif signal.getsignal(sig) not in (signal.SIG_DFL, None):
                signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, {s for s in signal.valid_signals() if blocked & (1 << (s - 1))})
        os.environb.clear()
        for item in self.env:
            key, _, value = item.partition(b"=")
            if key:
                os.environb[key] = value
        sys.argv = ["nsbox", *self.argv]
        _reopen_stdio()
        import prctl

        prctl.set_proctitle(" ".join(["nsbox", *self.argv]))
        prctl.set_name("nsbox")


def _reopen_stdio() -> None:
    """sys.stdin/stdout/stderr for the caller's descriptors, made as CPython makes them at
    start-up: line-buffered on a terminal (stderr always), block-buffered otherwise."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        old = getattr(sys, name)
        tty = os.isatty(fd)
        raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
        buffered: io.RawIOBase | io.BufferedIOBase
        if fd == 0:
            buffered = io.BufferedReader(raw)
        elif isinstance(old.buffer, io.RawIOBase):  # -u or PYTHONUNBUFFERED: every write goes out at once
            buffered = raw
        else:
            buffered = io.BufferedWriter(raw)
        stream = io.TextIOWrapper(
            buffered,
            encoding=old.encoding,
            errors=old.errors,
            newline="\n",
            line_buffering=fd != 0 and (tty or fd == 2),
            write_through=getattr(old, "write_through", False),  # -u
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
