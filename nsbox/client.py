"""The `nsbox` command's entry point: hand the command to a warm server, or run it here.

A warm command server (nsbox/server.py, docs/design.md §11) is a CPython that has already
imported everything the commands need. When one runs for this installation, the command
is passed to it — argv, environment, working directory, umask, limits and the descriptors
0, 1 and 2 themselves — and a fork of it runs the command against this process's terminal
or pipes; this process only forwards signals and exits as the command did. When none runs,
or it says no, the command runs here as it always has. The results are the same either way.

`NSBOX_SERVER=0` never uses a server; `NSBOX_SERVER=1` also starts one when none answers,
for the next command; unset, a running server (`nsbox server start`) is used.

This module runs before every command, so it imports nothing CPython has not loaded at
start-up but C modules: `socket` and `signal` build enum classes when imported (≈ 10 ms of
the 15 a bare `python -I -S` takes here, `python -X importtime`), their C halves `_socket`
and `_signal` do not, and offer the same calls. So is `os`: under `-S` CPython has not
imported it, and importing it costs ≈ 2.5 ms (`_collections_abc`, `posixpath`, `stat`);
`posix`, loaded at start-up, has every call used here. Its `environ` is the environment
this process started with, as bytes — what a command's caller passes on. (No `from
__future__ import annotations` either: a module import for what Python 3.10 does without.)
"""

import _signal
import _socket
import posix
import sys

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import NoReturn

SERVER_ENV = b"NSBOX_SERVER"
DIR_ENV = b"NSBOX_SERVER_DIR"
DEFAULT_DIR = "/run/nsbox-server"
PROTOCOL = b"nsbox-server 1"
# Forwarded to the command while it runs (a terminal's ^C reaches this process, not the server's fork).
FORWARDED = (
    _signal.SIGINT,
    _signal.SIGTERM,
    _signal.SIGHUP,
    _signal.SIGQUIT,
    _signal.SIGWINCH,
    _signal.SIGUSR1,
    _signal.SIGUSR2,
    _signal.SIGCONT,
    _signal.SIGTSTP,
)
SPAWN_BACKOFF = 5.0  # seconds: a server that is starting (or failed to) is not started again sooner


def main() -> "NoReturn":
    """The console script: the command's exit status, from a warm server or from running it here."""
    argv = sys.argv[1:]
    mode = posix.environ.get(SERVER_ENV, b"")
    if mode != b"0" and posix.geteuid() == 0 and not _own_command(argv):
        code = Client(server_dir(), mode == b"1").run(argv)
        if code is not None:
            posix._exit(code)  # (a failure before the server took the command was None: it runs here)
    from nsbox.cli import main as run_here

    run_here(argv)


def _own_command(argv: list[str]) -> bool:
    """`nsbox server …` manages the server, so it always runs here."""
    return "server" in (argv[: argv.index("--")] if "--" in argv else argv)


def server_dir() -> str:
    return _fsdecode(posix.environ.get(DIR_ENV, b"")) or DEFAULT_DIR


def _fsencode(name: str) -> bytes:
    """os.fsencode without os."""
    return name.encode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def _fsdecode(name: bytes) -> str:
    return name.decode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def identity() -> bytes:
    """What must match for a server to run this command exactly as this process would: the
    interpreter, its flags, the module path (so: this nsbox tree or installation), and the
    environment CPython reads at start-up (locale, and PYTHON* unless -E or -I)."""
    f = sys.flags
    flags = (f.isolated, f.ignore_environment, f.no_site, f.no_user_site, f.dont_write_bytecode, f.optimize)
    env = sorted(
        k + b"=" + v
        for k, v in posix.environ.items()
        if k in (b"LANG", b"LC_ALL", b"LC_CTYPE") or (k.startswith(b"PYTHON") and not f.ignore_environment)
    )
    parts = [_fsencode(sys.executable), repr(flags).encode(), *map(_fsencode, sys.path), b"", *env]
    return b"\n".join(parts)


def socket_name(ident: bytes) -> str:
    """One server per identity: two trees or interpreters never share one."""
    import zlib  # built into this CPython, ≈ 0.1 ms

    return f"{zlib.crc32(ident):08x}"


class Client:
    def __init__(self, directory: str, start: bool):
        self.dir, self.start = directory, start
        self.name = ""  # of the server's files: <dir>/<name>.sock, .lock, .log
        self.pid = 0  # the server's fork running the command
        self.pending: list[int] = []  # signals that came before it was known
        self.saved: dict[int, object] = {}

    def run(self, argv: list[str]) -> int | None:
        """The command's exit status, or None when no server took it."""
        ident = identity()
        self.name = socket_name(ident)
        sock = self.connect(f"{self.dir}/{self.name}.sock")
        if sock is None:
            if self.start:
                self.spawn()
            return None
        try:
            payload = request(ident, argv)  # before the handlers below change what is ignored
        except OSError:
            sock.close()
            return None
        for sig in FORWARDED:
            self.saved[sig] = _signal.signal(sig, self.forward)
            if self.saved[sig] == _signal.SIG_IGN:  # ignored here (nohup): ignored by the command too
                _signal.signal(sig, _signal.SIG_IGN)
        try:
            status = self.converse(sock, payload)
        finally:
            sock.close()
        if status is None:  # refused: this process runs the command after all
            for sig, handler in self.saved.items():
                _signal.signal(sig, handler)
            for sig in self.pending:
                posix.kill(posix.getpid(), sig)
            return None
        if status < 0:  # it was killed: so is this process, as a shell would see it
            if -status not in (_signal.SIGKILL, _signal.SIGSTOP):
                _signal.signal(-status, _signal.SIG_DFL)
            posix.kill(posix.getpid(), -status)
            return 128 - status
        return status

    def connect(self, path: str) -> _socket.socket | None:
        """A connection to a server that is root's, in a directory that is root's alone; None otherwise."""
        try:
            st = posix.lstat(self.dir)
            if st.st_uid != 0 or st.st_mode & 0o022 or not (st.st_mode & 0o170000 == 0o040000):
                return None
        except OSError:
            return None
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            sock.connect(path)
            uid = int.from_bytes(sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)[4:8], sys.byteorder)
            if uid == 0:
                return sock
        except OSError:
            pass
        sock.close()
        return None

    def converse(self, sock: _socket.socket, payload: bytes) -> int | None:
        """Send the command, learn who runs it, and wait for its end: its exit status (negative:
        killed by that signal), or None when the server declined it."""
        try:
            cwd = posix.open(".", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
        except OSError:
            return None  # a working directory that is gone: the command runs here and says so
        try:
            fds = (0, 1, 2, cwd)
            rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))]
            sent = sock.sendmsg([payload[:65536]], rights)
            if sent < len(payload):
                sock.sendall(payload[sent:])
        except OSError:
            return None  # a descriptor 0-2 closed, or the server went away before it read
        finally:
            posix.close(cwd)
        buf = b""
        while True:
            try:
                chunk = sock.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                if self.pid:
                    # It ran, and its server died before telling how it ended.
                    posix.write(2, b"error: the nsbox command server went away while running the command\n")
                    return 1
                return None
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                word, _, value = line.partition(b" ")
                if word == b"ok":
                    self.pid = int(value)
                    for sig in self.pending:
                        self.forward(sig, None)
                    self.pending.clear()
                elif word == b"exit":
                    return int(value) if self.pid else None  # it ended before taking the command on
                else:  # "no <why>": stale, another mount namespace, …
                    if value == b"stale" and self.start:
                        self.spawn()  # a fresh one, for the next command
                    return None

    def forward(self, sig: int, frame: object) -> None:
        if not self.pid:
            self.pending.append(sig)
            return
        try:
            posix.kill(self.pid, sig)
        except ProcessLookupError:
            return
        if sig == _signal.SIGTSTP:  # the command stopped: so does this process, as a shell expects
            posix.kill(posix.getpid(), _signal.SIGSTOP)

    def spawn(self, backoff: bool = True) -> None:
        """Start a server for the next command, detached, unless one is starting (or failed to) just now."""
        import time

        lock = f"{self.dir}/{self.name}.lock"
        try:
            if backoff and time.time() - posix.stat(lock).st_mtime < SPAWN_BACKOFF:
                return
        except OSError:
            pass
        boot = "import sys; sys.path[:] = sys.argv[1:]; from nsbox.server import main; main()"
        flags = [
            flag
            for on, flag in (
                (sys.flags.isolated, "-I"),
                (sys.flags.ignore_environment and not sys.flags.isolated, "-E"),
                (sys.flags.no_site, "-S"),
                (sys.flags.no_user_site and not sys.flags.isolated, "-s"),
                (sys.flags.dont_write_bytecode, "-B"),
            )
            if on
        ] + ["-O"] * sys.flags.optimize
        pid = posix.fork()
        if pid == 0:
            try:
                posix.setsid()
                if posix.fork() == 0:
                    null = posix.open("/dev/null", posix.O_RDWR)
                    for fd in (0, 1, 2):
                        posix.dup2(null, fd)
                    posix.chdir("/")
                    posix.execv(sys.executable, [sys.executable, *flags, "-c", boot, *sys.path])
            finally:
                posix._exit(0)
        posix.waitpid(pid, 0)


def request(ident: bytes, argv: list[str]) -> bytes:
    """The command as the server reads it (nsbox/server.py `Request`): NUL-separated fields,
    preceded by their length."""
    import resource  # C, ≈ 0.1 ms

    umask = posix.umask(0o022)
    posix.umask(umask)
    kinds = sorted({getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_")})
    limits = [f"{kind} {soft} {hard}" for kind in kinds for soft, hard in [resource.getrlimit(kind)]]
    masks = _signal_masks()
    fields = [
        PROTOCOL,
        ident,
        b"%o" % umask,
        " ".join(limits).encode(),
        b"%d" % posix.getpriority(posix.PRIO_PROCESS, 0),
        " ".join(map(str, sorted(posix.sched_getaffinity(0)))).encode(),
        masks,
        b"%d" % len(argv),
        *map(_fsencode, argv),
        *(k + b"=" + v for k, v in posix.environ.items()),
    ]
    body = b"\0".join(fields)
    return b"%d\n" % len(body) + body


def _signal_masks() -> bytes:
    """This process's ignored and blocked signals (hex masks, /proc/self/status), which a
    command inherits from its caller — `nohup nsbox …` ignores SIGHUP."""
    with open("/proc/self/status", "rb") as f:
        status = dict(line.split(b":\t", 1) for line in f.read().splitlines() if b":\t" in line)
    return status.get(b"SigIgn", b"0").strip() + b" " + status.get(b"SigBlk", b"0").strip()
