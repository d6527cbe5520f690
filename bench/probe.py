"""Run one nsbox command in-process with instruments attached, without changing nsbox's code.

    PYTHONPATH=/work/main /tmp/dev/bin/python bench/probe.py OUTDIR [--root R] ARGS...

Run by `python -m bench profile` under nsbox's own interpreter. It wraps (monkeypatches,
in this process only):
- the whole CLI in cProfile            -> OUTDIR/cli.prof
- the forked watcher's main in cProfile -> OUTDIR/watcher.prof (dumped before its os._exit)
- watcher.launch: how long the CLI waits for the watcher's ready report
- the modules the watcher imported after the fork (on its critical path: the CLI had not)
                                         -> OUTDIR/watcher-imports.json
- phase timestamps in the watcher (fork, shed memory, sandbox, first container spawned,
  ready report) and the CLI (start, imports done, parse done, report received, exit)
                                         -> OUTDIR/timeline.json
and, for a watcher, its module count and tracemalloc top (by file) after start-up
                                         -> OUTDIR/watcher-mem.json
NSBENCH_CPROFILE=0 keeps the marks only (no cProfile, whose overhead is ≈ 1.5×);
NSBENCH_WARM=1 imports everything first, as a fork of the warm command server has.
"""

import json
import os
import sys
import time

T0 = time.perf_counter()
OUT = sys.argv[1]
ARGV = sys.argv[2:]
os.makedirs(OUT, exist_ok=True)
MEM = os.environ.get("NSBENCH_TRACEMALLOC") == "1"
if MEM:
    import tracemalloc

    tracemalloc.start(1)

import cProfile  # noqa: E402

if os.environ.get("NSBENCH_CPROFILE") == "0":  # the marks alone: times without cProfile's ≈ 1.5× slowdown

    class _NoProfile:
        def enable(self) -> None: ...
        def disable(self) -> None: ...
        def dump_stats(self, path: str) -> None: ...

    cProfile.Profile = _NoProfile  # type: ignore[misc,assignment]

if os.environ.get("NSBENCH_WARM") == "1":  # as a fork of the warm command server: everything imported
    from nsbox import server

    server.preload()
T0 = time.perf_counter()

marks: list = []


def mark(what: str) -> None:
    marks.append((what, os.getpid(), round((time.perf_counter() - T0) * 1000, 2)))


def dump_marks(name: str) -> None:
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(marks, f)


prof = cProfile.Profile()
prof.enable()
mark("cli: interpreter up, probe loaded")
import nsbox.cli as cli  # noqa: E402

mark("cli: nsbox.cli imported")
import nsbox.pods  # noqa: E402,F401  (timed by the mark below)
import nsbox.watcher as watcher  # noqa: E402

mark("cli: nsbox.pods + watcher imported")

orig_launch = watcher.launch
orig_main = watcher._watcher_main
orig_shed = watcher._shed_cli_memory
orig_start = watcher.Watcher.start
orig_report = watcher.Watcher.report_ready
orig_sandbox = watcher.holder.create_sandbox
orig_start_container = watcher.Containers.start
orig_save = watcher.Watcher.save
orig_teardown = watcher.Termination.teardown


def launch(*a, **kw):
    mark("cli: launch watcher (fork)")
    try:
        return orig_launch(*a, **kw)
    finally:
        mark("cli: watcher's ready report received")


def watcher_main(*a, **kw):
    prof.disable()
    wprof = cProfile.Profile()
    marks.clear()
    mark("watcher: forked (grandchild)")
    before = set(sys.modules)
    wprof.enable()
    try:
        orig_main(*a, **kw)
    finally:
        wprof.disable()
        mark("watcher: loop ended")
        wprof.dump_stats(os.path.join(OUT, "watcher.prof"))
        dump_marks("timeline-watcher.json")
        with open(os.path.join(OUT, "watcher-imports.json"), "w") as f:  # what the fork imported itself
            json.dump(sorted(set(sys.modules) - before), f)


def shed():
    mark("watcher: shed CLI memory: begin")
    orig_shed()
    mark("watcher: shed CLI memory: end")


def start(self, fd):
    mark("watcher: Watcher() constructed; start()")
    return orig_start(self, fd)


def create_sandbox(self):
    mark("watcher: sandbox: begin (cgroups, etc files, unshare, lo, shm)")
    orig_sandbox(self)
    mark("watcher: sandbox: end")


def start_container(self, r):
    mark("watcher: start container: begin")
    orig_start_container(self, r)
    mark("watcher: start container: spawned (exec'd)")


def save(self):
    mark("watcher: save status.json: begin")
    orig_save(self)
    mark("watcher: save status.json: end")


def report_ready(self, report, final=False):
    if "ok" in report:
        mark("watcher: ready report")
        dump_marks("timeline-watcher.json")  # a pod that stays up hibernates: its loop never ends here
        if MEM:
            import gc

            gc.collect()
            snap = tracemalloc.take_snapshot()
            stats = snap.statistics("filename")
            with open(f"/proc/{os.getpid()}/smaps_rollup") as f:
                rollup = {ln.split(":")[0]: int(ln.split()[1]) for ln in f if ln.split()[-1] == "kB"}
            with open(os.path.join(OUT, "watcher-mem.json"), "w") as f:
                json.dump(
                    {
                        "modules": sorted(sys.modules),
                        "n_modules": len(sys.modules),
                        "traced_kib": round(sum(s.size for s in stats) / 1024),
                        "gc_objects": len(gc.get_objects()),
                        "rollup_kib": rollup,
                        "top": [[s.traceback[0].filename, round(s.size / 1024, 1), s.count] for s in stats[:40]],
                    },
                    f,
                    indent=1,
                )
    return orig_report(self, report, final)


def teardown(self):
    mark("watcher: teardown: begin")
    orig_teardown(self)
    mark("watcher: teardown: end")


watcher.launch = launch
watcher._watcher_main = watcher_main
watcher._shed_cli_memory = shed
watcher.Watcher.start = start
watcher.holder.create_sandbox = create_sandbox
watcher.Containers.start = start_container
watcher.Watcher.save = save
watcher.Watcher.report_ready = report_ready
watcher.Termination.teardown = teardown

code = 0
try:
    mark("cli: main()")
    code = cli.run(ARGV)
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else 0
finally:
    prof.disable()
    mark("cli: main() returned")
    if os.getpid() == os.getpgid(0) or marks and marks[0][0].startswith("cli"):
        prof.dump_stats(os.path.join(OUT, "cli.prof"))
        dump_marks("timeline-cli.json")
sys.exit(code)
