"""Two nsbox installs against each other, interleaved: what one change saves.

    sudo /var/tmp/nsbox-bench-venv/bin/python -m bench.ab BEFORE AFTER [--rounds N] [--work DIR]

BEFORE and AFTER are nsbox console scripts (say the `.venv/bin/nsbox` of two checkouts, each
installed by its `setup.sh`). Each round times, for each install (taking turns: A B, B A, ...)
and each mode (cold, `NSBOX_SERVER=0`; warm, `NSBOX_SERVER=1` with a server started untimed):
the one-shot `run --rm -a -- /bin/true`, `pod create`, adding a container to that (awake)
pod, and `delete pod` of a pod whose container exits on SIGTERM. Every install and mode has a
root and a server directory of its own under DIR; everything is deleted at the end. Prints a
Markdown table of medians and AFTER ÷ BEFORE (bench/README.md, "The teardown and the pod on
disk").
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

from bench.common import TRAP_WAIT, run, timed

OPS = ("one-shot", "pod create", "add a container", "delete, container exits on SIGTERM")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--work", default="/tmp/nsbox-ab")
    args = p.parse_args()
    installs = {"before": args.before, "after": args.after}
    shutil.rmtree(args.work, ignore_errors=True)
    samples: dict[tuple[str, str, str], list[float]] = {}

    def env(name: str, warm: bool) -> dict[str, str]:
        servers = os.path.join(args.work, f"servers-{name}")
        os.makedirs(servers, mode=0o700, exist_ok=True)
        return {**os.environ, "NSBOX_SERVER": "1" if warm else "0", "NSBOX_SERVER_DIR": servers}

    def nsbox(name: str, warm: bool, *argv: str) -> list[str]:
        return [installs[name], "--root", os.path.join(args.work, f"root-{name}-{int(warm)}"), *argv]

    for name in installs:
        run(nsbox(name, True, "server", "start"), env=env(name, True))
    try:
        for i in range(-2, args.rounds):  # two warm-up rounds
            order = list(installs) if i % 2 else list(reversed(installs))
            for warm in (False, True):
                for name in order:
                    e = env(name, warm)
                    times = (
                        timed(nsbox(name, warm, "run", "--rm", "-a", f"o{i}", "--", "/bin/true"), e),
                        timed(nsbox(name, warm, "pod", "create", f"p{i}"), e),
                        timed(nsbox(name, warm, "run", f"c{i}", "--pod", f"p{i}", "--", "sleep", "100"), e),
                    )
                    run(nsbox(name, warm, "run", f"d{i}", "--", "sh", "-c", TRAP_WAIT), env=e)
                    time.sleep(0.3)  # the container sets its trap
                    times += (timed(nsbox(name, warm, "delete", "pod", f"d{i}"), e),)
                    run(nsbox(name, warm, "delete", "pod", f"p{i}", "--grace-period", "0"), env=e)
                    if i >= 0:
                        for op, ms in zip(OPS, times):
                            samples.setdefault((op, "warm" if warm else "cold", name), []).append(ms)
    finally:
        for name in installs:
            for warm in (False, True):
                e = env(name, warm)
                run(nsbox(name, warm, "delete", "pod", "--all", "--force", "--grace-period", "0"), env=e, check=False)
            run(nsbox(name, True, "server", "stop"), env=env(name, True), check=False)
        shutil.rmtree(args.work, ignore_errors=True)
    print(f"{args.rounds} interleaved rounds after 2 warm-ups, medians in ms\n")
    print("| command | mode | before | after | after ÷ before |")
    print("|---|---|---:|---:|---:|")
    for op in OPS:
        for mode in ("cold", "warm"):
            before = statistics.median(samples[(op, mode, "before")])
            after = statistics.median(samples[(op, mode, "after")])
            print(f"| {op} | {mode} | {before:.1f} | {after:.1f} | {after / before:.2f} |")


if __name__ == "__main__":
    main()
