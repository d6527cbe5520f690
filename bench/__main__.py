"""python -m bench [options]        the benchmark of issue 8 (see bench/README.md)
python -m bench profile [options]  where nsbox's time and memory go (bench/analysis.py)
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import shlex
import shutil
import signal
import sys
import time

from bench import images, peers, report, suites
from bench.common import BenchError, loadavg, log

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(REPO, ".venv")


def default_nsbox() -> str:
    """What users run: the console script that `./setup.sh` installs, when it holds this tree's
    code; otherwise this tree run by the virtualenv's interpreter (`-m` adds runpy, ≈ 3 ms)."""
    script = os.path.join(VENV, "bin", "nsbox")
    if os.path.exists(script) and installed_is_current():
        return script
    python = os.path.join(VENV, "bin", "python")
    return f"{python if os.path.exists(python) else sys.executable} -m nsbox"


def installed_is_current() -> bool:
    """Does the package installed in .venv have the same Python files as the tree?"""
    import glob
    import sysconfig

    site = sysconfig.get_path("purelib", vars={"base": VENV, "platbase": VENV})
    tree = sorted(glob.glob(os.path.join(REPO, "nsbox", "*.py")))
    for path in tree:
        installed = os.path.join(site, "nsbox", os.path.basename(path))
        try:
            with open(path, "rb") as a, open(installed, "rb") as b:
                if a.read() != b.read():
                    return False
        except OSError:
            return False
    return bool(tree)


def nsbox_env(args: argparse.Namespace, work: str) -> dict[str, str]:
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    if args.no_bytecode_cache:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        # As an installed package runs: with its compiled bytecode. (This machine sets
        # PYTHONDONTWRITEBYTECODE=1, which makes `-m nsbox` from the tree recompile every module
        # on every call.) The cache goes to the bench's work dir, not into the tree.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = os.path.join(work, "pycache")
    return env


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench", description="nsbox against its peers (issue 8)")
    p.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=["all", "oneshot", "podops", "footprint", "scale", "quiet-delete", "images", "probes", "profile"],
        help="which part to run (default: all; `quiet-delete`: `delete --all` of N hibernated pods; `images`: "
        "image pods and pulls; `probes`: probed pods' memory; `profile` is the analysis)",
    )
    p.add_argument(
        "--nsbox",
        default=None,
        help=f"the nsbox command to time (default: {default_nsbox()!r}; e.g. {os.path.join(REPO, '.venv/bin/nsbox')})",
    )
    p.add_argument(
        "--pythonpath",
        default=None,
        help="PYTHONPATH for nsbox (default: the repo, when --nsbox is the default `-m nsbox`)",
    )
    p.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="keep PYTHONDONTWRITEBYTECODE=1 for nsbox (every module compiled on every call)",
    )
    p.add_argument("--work", default="/tmp/nsbox-bench", help="private work dir (nsbox --root is WORK/root)")
    p.add_argument(
        "--full",
        action="store_true",
        help="the full run: scale N=1000 (checkpoints 100, 500, 1000), 30 reps, podman scale 500",
    )
    p.add_argument("-n", "--scale-n", type=int, default=None, help="pods in the scale test (quick: 100)")
    p.add_argument("--podman-n", type=int, default=None, help="podman pods in the scale test (quick: 30)")
    p.add_argument("--batch", type=int, default=10, help="parallel batch size in the scale test")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per cell (quick: 10)")
    p.add_argument("--footprint-pods", type=int, default=10, help="pods per runtime in the footprint test")
    p.add_argument("--probe-pods", type=int, default=100, help="pods per probe kind in the probes test")
    p.add_argument("--probe-period", type=int, default=10, help="periodSeconds of the probes test's probes")
    p.add_argument("--probe-window", type=float, default=30.0, help="seconds over which the probes test samples memory")
    p.add_argument(
        "--probe-kinds",
        default="none,httpGet,tcpSocket,exec",
        help="the probes test's variants, comma-separated (none, httpGet, tcpSocket, exec)",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="RUNTIME",
        help="leave out a peer (podman, crun, runc, bwrap, unshare)",
    )
    p.add_argument("--no-install", action="store_true", help="do not apt-get missing peers")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results"), help="where results go")
    p.add_argument("--tag", default="", help="suffix of the result file names")
    a = p.parse_args(argv)
    if a.nsbox is None:
        a.nsbox = default_nsbox()
        if a.pythonpath is None and "-m nsbox" in a.nsbox:
            a.pythonpath = REPO
    a.scale_n = a.scale_n or (1000 if a.full else 100)
    a.podman_n = a.podman_n if a.podman_n is not None else (500 if a.full else 30)
    a.reps = a.reps or (30 if a.full else 10)
    return a


def main(argv: list[str]) -> int:
    args = parse(argv)
    if os.geteuid() != 0:
        print("bench: must run as root (nsbox and the peers need it)", file=sys.stderr)
        return 2
    os.makedirs(args.work, exist_ok=True)
    lock = open(os.path.join(args.work, ".lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"bench: another bench run holds {args.work}", file=sys.stderr)
        return 2
    if args.what == "profile":
        from bench import analysis

        return analysis.main(args, nsbox_env(args, args.work))

    def to_interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, to_interrupt)
    signal.signal(signal.SIGHUP, to_interrupt)

    tools = peers.ensure_packages(install=not args.no_install)
    skipped = {}
    for tool, pkg in (
        ("podman", "podman"),
        ("crun", "crun"),
        ("runc", "runc"),
        ("bwrap", "bubblewrap"),
        ("unshare", "util-linux"),
    ):
        if tool not in tools:
            skipped[tool] = f"not installed (Debian package {pkg})"
    for s in args.skip:
        skipped[s] = "left out (--skip)"
    if args.what in ("probes", "quiet-delete"):  # nsbox alone: the peers have no probes, no hibernation
        for s in ("podman", "crun", "runc", "bwrap", "unshare"):
            skipped.setdefault(s, f"not in the {args.what} test")
    if "busybox" not in tools:
        for s in ("podman", "crun", "runc"):
            skipped.setdefault(s, "no busybox-static for the image/bundle")
    for s, why in skipped.items():
        log(f"skipping {s}: {why}")

    env = nsbox_env(args, args.work)
    root = os.path.join(args.work, "root")
    nsb = peers.Nsbox(shlex.split(args.nsbox), env, root)
    rts: dict = {"nsbox": nsb}
    if "nsbox warm" not in args.skip and args.what in ("all", "oneshot", "podops"):
        rts["nsbox warm"] = peers.NsboxWarm(
            nsb.argv, env, os.path.join(args.work, "root-warm"), os.path.join(args.work, "servers")
        )
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "nsbox": nsb.describe(),
        "root": root,
        "mode": "full" if args.full else "quick",
        "reps": args.reps,
        "load_before": loadavg(),
        "skipped": skipped,
        "versions": {},
        "what": args.what,
    }
    t_start = time.monotonic()
    results: dict = {"meta": meta}
    leftovers: dict = {}
    ib: images.ImageBench | None = None
    try:
        rootfs = peers.make_rootfs(os.path.join(args.work, "rootfs")) if "busybox" in tools else None
        meta["versions"]["nsbox"] = _first_line(nsb.cmd("version"), env)
        for name in ("podman", "crun", "runc"):
            if name in skipped:
                continue
            try:
                rt = peers.Podman(args.work, rootfs) if name == "podman" else peers.Oci(name, args.work, rootfs)
                rts[name] = rt
                rt.setup()
                meta["versions"][name] = peers.tool_version([name, "--version"])
            except (BenchError, OSError) as e:
                log(f"skipping {name}: set-up failed: {e}")
                skipped[name] = f"set-up failed: {str(e)[:200]}"
                rts.pop(name, None)
        if "bwrap" not in skipped:
            rts["bwrap"] = peers.bwrap()
            meta["versions"]["bwrap"] = peers.tool_version(["bwrap", "--version"])
        if "unshare" not in skipped:
            rts["unshare"] = peers.unshare()
        # Clean the slate: a previous run killed hard may have left pods in the private root.
        for name in ("nsbox", "nsbox warm", "podman", "crun", "runc"):
            if name in rts:
                rts[name].cleanup(**({"final": False} if name in ("crun", "runc") else {}))
        if "nsbox warm" in rts:
            # After the clean slate, whose clean-up stops a server: each warm command would
            # otherwise run cold and start one (up to 2026-12-06 the warm rows were mostly cold).
            rts["nsbox warm"].setup()

        py = nsb.argv[0] if "python" in os.path.basename(nsb.argv[0]) else _script_python(nsb.argv[0])
        refs = [("ref: nsbox version (CLI start-up floor)", nsb.cmd("version"), env)]
        if "nsbox warm" in rts:
            refs.append(("ref: nsbox version, warm server", rts["nsbox warm"].cmd("version"), rts["nsbox warm"].env))
        if py:
            refs.append(("ref: nsbox's python -c pass", [py, "-c", "pass"], env))
            refs.append(("ref: nsbox's python -S -c pass", [py, "-S", "-c", "pass"], env))
        if args.what in ("all", "oneshot"):
            results["oneshot"] = [s.__dict__ for s in suites.oneshot(rts, refs, args.reps)]
        if args.what in ("all", "podops"):
            results["podops"] = [s.__dict__ for s in suites.pod_ops(rts, args.reps)]
        if args.what in ("all", "images"):
            ib = images.ImageBench(args.work, nsb, rts.get("podman"))
            ib.setup(big=args.what == "images")
            results["images"] = [s.__dict__ for s in images.suite(ib, args.reps, whole=args.what == "images")]
            results["images_sizes"] = ib.sizes
        if args.what in ("all", "footprint"):
            baselines = []
            if py:
                baselines.append(("ref: idle python (time.sleep)", [py, "-c", "import time; time.sleep(60)"], env))
            results["footprint"] = suites.footprint(rts, args.footprint_pods, baselines)
        if args.what == "probes":  # not part of `all`: minutes of sampling
            kinds = [k for k in args.probe_kinds.split(",") if k]
            results["probes"] = suites.probes(nsb, args.probe_pods, kinds, args.probe_period, args.probe_window)
        if args.what == "quiet-delete":  # not part of `all`: the scale test deletes quiet pods too
            results["quiet_delete"] = [suites.quiet_delete(nsb, args.scale_n, args.batch)]
        if args.what in ("all", "scale"):
            checkpoints = sorted({c for c in (10, 100, 500, 1000, args.scale_n) if c <= args.scale_n})
            results["scale"] = [
                suites.scale(nsb, args.scale_n, checkpoints, args.batch, mem_of=lambda: suites.nsbox_scale_memory(nsb))
            ]
            if "podman" in rts and args.podman_n > 0:
                pc = sorted({c for c in checkpoints if c <= args.podman_n} | {args.podman_n})
                results["scale"].append(
                    suites.scale(
                        rts["podman"],
                        args.podman_n,
                        pc,
                        args.batch,
                        mem_of=lambda: suites.podman_scale_memory(rts["podman"]),
                    )
                )
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        results["meta"]["interrupted"] = True
    except Exception as e:  # noqa: BLE001 - report what was measured so far
        import traceback

        traceback.print_exc()
        log(f"failed: {e!r}: cleaning up")
        results["meta"]["interrupted"] = f"failed: {e!r}"
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the clean-up must finish
        for name in ("nsbox", "nsbox warm", "podman", "crun", "runc"):
            if name in rts:
                try:
                    left = rts[name].cleanup()
                except Exception as e:  # noqa: BLE001 - clean-up must go on
                    left = [f"clean-up failed: {e}"]
                if left:
                    leftovers[name] = left
                    log(f"{name}: left after clean-up: {left}")
        if ib is not None:  # after the pods: none of them uses the store any more
            try:
                left = ib.cleanup()
            except Exception as e:  # noqa: BLE001 - clean-up must go on
                left = [f"clean-up failed: {e}"]
            if left:
                leftovers["images"] = left
                log(f"images: left after clean-up: {left}")
        signal.signal(signal.SIGINT, signal.default_int_handler)
    meta["leftovers_after_cleanup"] = leftovers
    meta["load_after"] = loadavg()
    meta["minutes"] = round((time.monotonic() - t_start) / 60, 1)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, time.strftime("%Y-%m-%d") + (f"-{args.tag}" if args.tag else ""))
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=1, default=str)
    png = report.plot(results, stem + ".png")
    md = report.markdown(results, os.path.basename(png) if png else None)
    with open(stem + ".md", "w") as f:
        f.write(md)
    print(md)
    log(f"wrote {stem}.md, {stem}.json" + (f", {png}" if png else " (no plot: matplotlib missing)"))
    return 1 if results["meta"].get("interrupted") else 0


def _first_line(argv: list[str], env: dict[str, str]) -> str:
    import subprocess

    try:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def _script_python(script: str) -> str | None:
    """The interpreter of a console script (its #! line)."""
    path = shutil.which(script) or script
    try:
        with open(path, "rb") as f:
            first = f.readline().decode(errors="replace")
    except OSError:
        return None
    return first[2:].strip().split()[0] if first.startswith("#!") else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
