"""`nsbox demo`: what a pod is, shown with real tools (README, "The demo").

Each demo applies one of the example manifests (shipped in the package as
nsbox/examples/, which the repository's examples/ points to), then runs the
commands a person would type, printing each one with its output, and checks
what the output proves: namespace inodes side by side, `ipcs` inside the pod
and in another pod, an HTTP response over localhost.

Everything runs through the real `nsbox` command (this interpreter,
`-m nsbox`) against a private root under /tmp, never /run/nsbox, so the
demo neither sees nor touches the user's pods. Whatever happens - a failed
check, an error, Ctrl-C, SIGTERM - the demo's pods are deleted, `gc` runs,
and the private root is removed.
"""

from __future__ import annotations

import filecmp
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nsbox import mountinfo

EXAMPLES = Path(__file__).resolve().parent / "examples"
NAMESPACES = ("net", "ipc", "uts", "pid", "mnt")
COMMAND_TIMEOUT = 60  # seconds for any one nsbox command
LOG_TIMEOUT = 20  # seconds to wait for a container to print what the demo looks for

# A client that says what connecting to 127.0.0.1:8080 gives: "Success" or an error.
CONNECT_PROBE = (
    'import os, socket; print("connect to 127.0.0.1:8080:", '
    'os.strerror(socket.socket().connect_ex(("127.0.0.1", 8080))))'
)
# An HTTP GET of the volume demo's index page: status line, headers, body.
HTTP_GET = (
    'import urllib.request as u; r = u.urlopen("http://127.0.0.1:8080/"); '
    'print("HTTP", r.status, r.reason); print(r.headers, end=""); print(r.read().decode(), end="")'
)
# A pod that only waits, to look at the pod from outside (exits at once on SIGTERM).
IDLE = ["sh", "-c", 'trap "exit 0" TERM; sleep infinity & wait']


class Interrupted(Exception):
    """SIGTERM or SIGHUP arrived: stop like Ctrl-C does."""


class StepFailed(Exception):
    """A command of the demo did not do what it must; the demo cannot go on."""


# ---------------------------------------------------------------- output


class Style:
    def __init__(self, stream: Any):
        on = stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        self.codes = {"bold": "1", "dim": "2", "cmd": "1;36", "ok": "1;32", "fail": "1;31"} if on else {}

    def __call__(self, what: str, text: str) -> str:
        code = self.codes.get(what)
        return f"\033[{code}m{text}\033[0m" if code else text


class Session:
    """One private root, the nsbox command against it, and what the checks found."""

    def __init__(self, out: Any = None):
        self.out = out or sys.stdout
        self.style = Style(self.out)
        self.root = tempfile.mkdtemp(prefix="nsbox-demo-", dir="/tmp")
        self.checks: list[tuple[str, bool]] = []

    # ------------------------------------------------------------ printing

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def explain(self, text: str) -> None:
        self.say()
        for line in text.strip("\n").splitlines():
            self.say(self.style("dim", f"  {line}") if line else "")

    def heading(self, text: str) -> None:
        self.say()
        self.say(self.style("bold", f"=== {text} ==="))

    def check(self, ok: bool, claim: str) -> bool:
        self.checks.append((claim, ok))
        mark = self.style("ok", "[ok]  ") if ok else self.style("fail", "[FAIL]")
        self.say(f"  {mark} {claim}")
        return ok

    def show_command(self, shown: list[str]) -> None:
        self.say(self.style("cmd", "$ " + shlex.join(shown)))

    def show_output(self, text: str) -> None:
        for line in text.rstrip("\n").splitlines():
            self.say(f"    {line}")

    # ------------------------------------------------------------ running nsbox

    def run(
        self, *args: str, show: bool = True, output: bool = True, must: bool = True, shown: list[str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `nsbox --root <private root> ARGS`; print `$ nsbox ARGS` and the output."""
        argv = [sys.executable, "-m", "nsbox", "--root", self.root, *args]
        if show:
            self.show_command(shown or ["nsbox", *args])
        # cwd "/": with -m, the current directory comes first on sys.path, and a
        # source checkout's nsbox/ there would shadow the installed package.
        p = subprocess.run(
            argv, cwd="/", stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        )
        if show and output:
            self.show_output(p.stdout + p.stderr)
        if must and p.returncode != 0:
            if not (show and output):
                self.show_output(p.stdout + p.stderr)
            raise StepFailed(f"`nsbox {shlex.join(args)}` exited with {p.returncode}")
        return p

    def apply(self, example: str) -> None:
        self.run(
            "apply", "-f", str(EXAMPLES / f"{example}.yaml"), shown=["nsbox", "apply", "-f", display_path(example)]
        )

    def wait_ready(self, pod: str) -> None:
        self.run("wait", f"pod/{pod}", "--for=condition=Ready", "--timeout=30s")

    def logs_when(self, pod: str, container: str, text: str) -> str:
        """Wait until the container has printed `text`, then show `nsbox logs` once."""
        deadline = time.monotonic() + LOG_TIMEOUT
        while True:
            p = self.run("logs", pod, "-c", container, show=False, must=False)
            if text in p.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.show_command(["nsbox", "logs", pod, "-c", container])
        self.show_output(p.stdout + p.stderr)
        if text not in p.stdout:
            raise StepFailed(f'container {container} did not print "{text}" within {LOG_TIMEOUT}s')
        return p.stdout

    def exec(
        self, pod: str, container: str | None, *command: str, must: bool = True
    ) -> subprocess.CompletedProcess[str]:
        where = ["-c", container] if container else []
        return self.run("exec", pod, *where, "--", *command, must=must)

    def run_other_pod(self) -> None:
        self.explain("Another pod, to look from outside:")
        self.run("run", "other", "--", *IDLE)
        self.wait_ready("other")

    def inodes(self, pod: str) -> dict[str, dict[str, int]]:
        """{container: {namespace: inode}} from `nsbox inspect` (which the user is shown)."""
        data = json.loads(self.run("inspect", pod, output=False).stdout)
        return {
            c["name"]: {ns: v["inode"] for ns, v in c["namespaces"].items()}
            for c in data["containers"]
            if c["namespaces"]
        }

    def namespace_table(self, columns: dict[str, dict[str, int]]) -> dict[str, list[int]]:
        """Print the namespace inodes of several processes side by side; return them by namespace."""
        header = ["namespace", *columns]
        rows = [[ns, *(str(c.get(ns, "-")) for c in columns.values())] for ns in NAMESPACES]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        self.say(self.style("bold", "    " + "   ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()))
        for r in rows:
            self.say("    " + "   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        return {ns: [c.get(ns, 0) for c in columns.values()] for ns in NAMESPACES}

    def delete(self, *pods: str) -> None:
        self.run("delete", "pod", *pods, "--grace-period", "0")

    # ------------------------------------------------------------ cleaning up

    def clean_up(self) -> list[str]:
        """Delete every pod of the private root, collect garbage, remove the root.

        Returns what could not be cleaned (empty when all went well). Never raises.
        """
        problems: list[str] = []
        steps = (
            ["delete", "pod", "--all", "--grace-period", "0"],
            ["delete", "pod", "--all", "--grace-period", "0", "--force"],
            ["gc"],
        )
        for i, args in enumerate(steps):
            if i == 1 and not self.pods_left():
                continue  # the graceful delete did it all
            try:
                self.run(*args, show=False, must=False)
            except Exception as e:  # a hung or missing nsbox: report it, go on
                problems.append(f"nsbox {' '.join(args)}: {e}")
        deadline = time.monotonic() + 10
        while self.pods_left() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.pods_left():
            problems.append(f"pods still in {self.root}: {', '.join(self.pods_left())}")
        mounted = mountinfo.points_under(self.root)
        if mounted:
            problems.append(f"still mounted: {', '.join(mounted)}")
        if not problems:
            shutil.rmtree(self.root, ignore_errors=True)
        return problems

    def pods_left(self) -> list[str]:
        try:
            return os.listdir(os.path.join(self.root, "pods"))
        except FileNotFoundError:
            return []


def display_path(example: str) -> str:
    """How a person would name the example: examples/X.yaml from a checkout, else the installed file."""
    installed = EXAMPLES / f"{example}.yaml"
    local = Path("examples") / f"{example}.yaml"
    try:
        if local.is_file() and filecmp.cmp(local, installed, shallow=False):
            return str(local)
    except OSError:
        pass
    return str(installed)


def host_inodes() -> dict[str, int]:
    return {ns: os.stat(f"/proc/self/ns/{ns}").st_ino for ns in NAMESPACES}


# ---------------------------------------------------------------- the demos


def demo_localhost(s: Session) -> None:
    s.heading("localhost: two containers of one pod talk over 127.0.0.1")
    s.explain("""
A pod's containers share one network namespace: one set of interfaces, one
127.0.0.1, one port space. The pod below runs a TCP server on 127.0.0.1:8080
in container "server" and a client in container "client".
""")
    s.apply("localhost")
    s.wait_ready("localhost-demo")
    s.run("get", "pods")
    log = s.logs_when("localhost-demo", "client", "server said")
    s.check("server said: hello client" in log, 'the client reached the server at 127.0.0.1:8080 ("server said")')
    s.logs_when("localhost-demo", "server", "answered client at 127.0.0.1")

    s.run_other_pod()
    s.explain("The namespaces of each process, by inode number (from `nsbox inspect`):")
    pod = s.inodes("localhost-demo")
    other = s.inodes("other")["other"]
    ino = s.namespace_table(
        {"server": pod["server"], "client": pod["client"], "other pod": other, "host": host_inodes()}
    )
    for ns in ("net", "ipc", "uts"):
        server, client, out, host = ino[ns]
        s.check(
            server == client and server not in (out, host),
            f"{ns}: one namespace for the pod's two containers, not the other pod's or the host's",
        )
    s.check(ino["pid"][0] != ino["pid"][1] and ino["mnt"][0] != ino["mnt"][1], "pid, mnt: each container has its own")

    s.explain("The same connection attempt from the client container, then from the other pod:")
    inside = s.exec("localhost-demo", "client", "python3", "-c", CONNECT_PROBE).stdout
    outside = s.exec("other", None, "python3", "-c", CONNECT_PROBE).stdout
    s.check(
        "Success" in inside and "Connection refused" in outside,
        "the server is reachable inside its pod, and refused from the other pod: its 127.0.0.1 is another",
    )
    s.explain("The hostname is the pod's name (a UTS namespace per pod):")
    h1 = s.exec("localhost-demo", "server", "hostname").stdout.strip()
    h2 = s.exec("other", None, "hostname").stdout.strip()
    s.check((h1, h2) == ("localhost-demo", "other"), "each pod has its own hostname")
    s.delete("localhost-demo", "other")


def demo_ipc(s: Session) -> None:
    s.heading("ipc: SysV semaphores and shared memory, and POSIX /dev/shm, shared by a pod")
    s.explain("""
A pod's containers share one IPC namespace and one /dev/shm. "producer" makes
a SysV shared memory segment and two semaphores (key 0x6e736278) and a POSIX
segment /dev/shm/nsbox-demo; "consumer" attaches to them, and five messages
pass through the segment, the semaphores taking turns.
""")
    s.apply("ipc")
    s.wait_ready("ipc-demo")
    s.logs_when("ipc-demo", "producer", "the consumer wrote")
    log = s.logs_when("ipc-demo", "consumer", "received 5/5")
    s.check("received 5/5 messages" in log, "the consumer received all 5 messages through SysV IPC")

    key = "0x6e736278"
    s.explain("`ipcs` in each container: the same objects (same key, same ids), attached twice (nattch 2):")
    seen = [s.exec("ipc-demo", c, "ipcs", "-m", "-s").stdout for c in ("producer", "consumer")]
    s.check(
        all(out.count(key) == 2 for out in seen), f"both containers see the segment and the semaphore set of key {key}"
    )
    shm = s.exec("ipc-demo", "consumer", "ls", "-l", "/dev/shm").stdout
    s.check("nsbox-demo" in shm, "the consumer sees the producer's /dev/shm/nsbox-demo")

    s.run_other_pod()
    s.explain("The same commands in another pod: its own, empty IPC namespace and /dev/shm:")
    other_ipcs = s.exec("other", None, "ipcs", "-m", "-s").stdout
    other_shm = s.exec("other", None, "ls", "-l", "/dev/shm").stdout
    s.check(
        key not in other_ipcs and "nsbox-demo" not in other_shm,
        "the other pod sees neither the SysV objects nor /dev/shm/nsbox-demo",
    )
    host = subprocess.run(["ipcs", "-m", "-s"], capture_output=True, text=True) if shutil.which("ipcs") else None
    if host is not None:
        s.show_command(["ipcs", "-m", "-s"])
        s.explain(f"(on the host: {'no object' if key not in host.stdout else 'an object'} with key {key})")
        s.check(key not in host.stdout, "the host does not see them either")

    s.explain("The IPC namespaces by inode number (from `nsbox inspect`):")
    pod = s.inodes("ipc-demo")
    other = s.inodes("other")["other"]
    ino = s.namespace_table(
        {"producer": pod["producer"], "consumer": pod["consumer"], "other pod": other, "host": host_inodes()}
    )
    producer, consumer, out, me = ino["ipc"]
    s.check(producer == consumer and producer not in (out, me), "ipc: one namespace per pod")
    s.delete("ipc-demo", "other")
    s.explain("The SysV objects and /dev/shm went with the pod: nothing to clean up by hand.")


def demo_volume(s: Session) -> None:
    s.heading("volume: a file puller and a web server share an emptyDir")
    s.explain("""
The classic pod: "puller" writes files into an emptyDir volume, "server"
serves that volume (mounted read-only) with python3 -m http.server on
127.0.0.1:8080, and "reader" fetches from it over localhost.
""")
    s.apply("volume")
    s.wait_ready("volume-demo")
    s.logs_when("volume-demo", "puller", "wrote index.html")
    log = s.logs_when("volume-demo", "reader", "-> 200")
    s.check("GET /now.txt -> 200: update" in log, "the reader gets the puller's file from the server")
    listing = s.exec("volume-demo", "server", "ls", "-l", "/srv/www").stdout
    s.check("index.html" in listing and "now.txt" in listing, "the server sees what the puller wrote")
    s.explain("An HTTP GET over localhost, from inside the pod:")
    page = s.exec("volume-demo", "reader", "python3", "-c", HTTP_GET).stdout
    s.check(
        page.startswith("HTTP 200") and "Hello from pod volume-demo" in page, "HTTP 200 with the page the puller wrote"
    )
    s.explain("The server's mount is readOnly, the puller's is not:")
    ro = s.exec("volume-demo", "server", "touch", "/srv/www/x", must=False)
    rw = s.exec("volume-demo", "puller", "touch", "/pull/x", must=False)
    s.check(
        ro.returncode != 0 and "Read-only" in ro.stderr and rw.returncode == 0,
        "the server cannot write to the volume; the puller can",
    )

    s.run_other_pod()
    outside = s.exec("other", None, "python3", "-c", CONNECT_PROBE).stdout
    s.check("Connection refused" in outside, "another pod cannot reach the server")
    s.delete("volume-demo", "other")
    left = [d for d in os.listdir(os.path.join(s.root, "pods"))] if os.path.isdir(os.path.join(s.root, "pods")) else []
    s.check(not left, "deleting the pod removed its volume")


DEMOS: dict[str, Callable[[Session], None]] = {
    "localhost": demo_localhost,
    "ipc": demo_ipc,
    "volume": demo_volume,
}


# ---------------------------------------------------------------- the entry point


def _interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


# Handled even where the parent left SIGINT ignored (a background job of a script).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run(which: str) -> int:
    """Run one demo or all of them; exit code 0 only when every check passed."""
    names = list(DEMOS) if which == "all" else [which]
    if not EXAMPLES.is_dir():
        print(f"error: the example manifests are missing ({EXAMPLES}): reinstall nsbox", file=sys.stderr)
        return 1
    previous = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS}
    s = Session()
    results: dict[str, bool] = {}
    interrupted = False
    try:
        s.say(s.style("bold", f"nsbox demo {which}"))
        s.explain(f"""
Every command below runs with --root {s.root}: a private root, removed at
the end, so your own pods (in /run/nsbox) are not touched. Type the commands
yourself as root, without --root; the manifests are in {display_path("localhost").rsplit("/", 1)[0]}/.
""")
        for name in names:
            before = len(s.checks)
            try:
                DEMOS[name](s)
                results[name] = all(ok for _, ok in s.checks[before:])
            except Interrupted:
                raise
            except Exception as e:  # StepFailed, or nsbox hung (TimeoutExpired), ...
                s.check(False, str(e) if isinstance(e, StepFailed) else f"{type(e).__name__}: {e}")
                results[name] = False
                try:  # so that the next demo starts clean
                    s.run("delete", "pod", "--all", "--grace-period", "0", must=False)
                except subprocess.SubprocessError:
                    pass  # clean_up() below tries harder
    except (KeyboardInterrupt, Interrupted) as e:
        interrupted = True
        print(f"\ninterrupted ({e or 'SIGINT'}): deleting the demo's pods", file=sys.stderr)
    finally:
        # A second Ctrl-C must not leave pods behind half-way through the clean-up.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        problems = s.clean_up()
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
    for p in problems:
        print(
            f"error: clean-up: {p} (try: nsbox --root {s.root} delete pod --all --force; nsbox --root {s.root} gc)",
            file=sys.stderr,
        )
    if interrupted:
        return 130
    s.heading("summary")
    for name in names:
        ok = results.get(name, False)
        s.say(f"  {s.style('ok', 'PASS') if ok else s.style('fail', 'FAIL')}  {name}")
    passed = all(results.get(n, False) for n in names) and not problems
    s.say()
    s.say("All demos passed." if passed else "Some demos failed: see [FAIL] above.")
    if passed:
        s.explain(f"""
Next: read the manifests, apply one yourself (sudo nsbox apply -f {display_path("localhost")}),
then nsbox get pods, nsbox describe pod localhost-demo, nsbox delete pod localhost-demo.
""")
    return 0 if passed else 1
