"""`python -m bench profile` (this module): where nsbox's time and memory go.

Writes bench/results/<date>-profile.md with, for the nsbox command under test:
1. variants of the one-shot cycle, interleaved: as configured; without a bytecode cache;
   with the root on tmpfs (no disk fsync); plus the interpreter floors;
2. -X importtime of `run --rm -a` (median self and cumulative time per module over runs);
3. a phase timeline of `run --rm -a`, `pod create`, `run --pod` and `delete` (bench/probe.py
   wraps nsbox's functions in-process; nsbox's code is not changed);
4. cProfile top functions of the CLI and of the watcher;
5. strace -c -f of the one-shot (CLI + watcher + container) and the fsync calls;
6. the watcher's memory: smaps by mapping, module count, tracemalloc top by file.
"""

from __future__ import annotations

import json
import os
import pstats
import re
import shlex
import shutil
import statistics
import subprocess
import time

from bench.common import NS, Case, interleave, loadavg, log, run, smaps_rollup, timed

HERE = os.path.dirname(os.path.abspath(__file__))


def main(args, env: dict[str, str]) -> int:
    argv = shlex.split(args.nsbox)
    py = argv[0] if "python" in os.path.basename(argv[0]) else None
    if py is None:
        from bench.__main__ import _script_python

        py = _script_python(argv[0])
    work = os.path.join(args.work, "profile")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    root = os.path.join(args.work, "root")
    tmpfs_root = "/dev/shm/nsbox-bench-root"
    reps = max(5, args.reps // 2) if args.reps else 8
    out = [
        f"# Where nsbox's time and memory go — {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"- nsbox: `{args.nsbox}`, interpreter `{py}`; load average before {loadavg()}",
        "- the machine is shared and noisy: read ratios and shares, not absolute figures",
        "",
    ]

    def nsb(*a: str, r: str = root, e: dict | None = None) -> list[str]:
        return [*argv, "--root", r, "-n", NS, *a]

    def cleanup() -> None:
        for r in (root, tmpfs_root):
            if os.path.isdir(r):
                run(nsb("delete", "pod", "--all", "--force", "--grace-period=0", r=r), env=env, check=False)
                run(nsb("gc", r=r), env=env, check=False)
        shutil.rmtree(tmpfs_root, ignore_errors=True)

    try:
        cleanup()
        out += variants(nsb, py, env, reps, tmpfs_root)
        out += importtime(py, argv, nsb, env, reps)
        out += timelines(py, nsb, env, work, reps)
        out += cprofile_tops(work)
        out += strace(nsb, env, work)
        out += watcher_memory(py, nsb, env, work)
    finally:
        cleanup()
    out += ["", f"load average after {loadavg()}"]
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, time.strftime("%Y-%m-%d") + (f"-{args.tag}" if args.tag else "") + "-profile.md")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print("\n".join(out))
    log(f"wrote {path}")
    return 0


# ---------------------------------------------------------------- 1. variants


def variants(nsb, py, env, reps, tmpfs_root) -> list[str]:
    log("profile: one-shot variants")
    nocache = dict(env, PYTHONDONTWRITEBYTECODE="1")
    nocache.pop("PYTHONPYCACHEPREFIX", None)
    cases = [
        Case(
            "one-shot (as configured)",
            measure=lambda i: timed(nsb("run", "--rm", "-a", f"v{i}", "--", "/bin/true"), env),
        ),
        Case(
            "one-shot, root on tmpfs (/dev/shm)",
            measure=lambda i: timed(nsb("run", "--rm", "-a", f"t{i}", "--", "/bin/true", r=tmpfs_root), env),
        ),
        Case(
            "one-shot, no bytecode cache",
            measure=lambda i: timed(nsb("run", "--rm", "-a", f"n{i}", "--", "/bin/true"), nocache),
        ),
        Case("nsbox version", measure=lambda i: timed(nsb("version"), env)),
        Case("nsbox version, no bytecode cache", measure=lambda i: timed(nsb("version"), nocache)),
        Case("nsbox get pods (no pods)", measure=lambda i: timed(nsb("get", "pods"), env)),
        Case(
            "pod create",
            measure=lambda i: timed(nsb("pod", "create", f"pc{i}"), env),
            after=lambda i: run(nsb("delete", "pod", f"pc{i}", "--force", "--grace-period=0"), env, check=False),
        ),
        Case(
            "pod create, root on tmpfs",
            measure=lambda i: timed(nsb("pod", "create", f"pt{i}", r=tmpfs_root), env),
            after=lambda i: run(
                nsb("delete", "pod", f"pt{i}", "--force", "--grace-period=0", r=tmpfs_root), env, check=False
            ),
        ),
    ]
    if py:
        cases += [
            Case("python -c pass", measure=lambda i: timed([py, "-c", "pass"], env)),
            Case("python -S -c pass", measure=lambda i: timed([py, "-S", "-c", "pass"], env)),
            Case(
                "python -I -S -c 'import os, json, socket, selectors'",
                measure=lambda i: timed([py, "-I", "-S", "-c", "import os, json, socket, selectors"], env),
            ),
        ]
    series = interleave("variants", cases, reps)
    lines = [
        "## 1. Variants of the cycle (ms, interleaved)",
        "",
        "| variant | median | min–max | n |",
        "|---|---:|---:|---:|",
    ]
    for s in series:
        lines.append(f"| {s.runtime} | {s.median:.1f} | {s.lo:.0f}–{s.hi:.0f} | {len(s.samples)} |")
    return lines + [""]


# ---------------------------------------------------------------- 2. importtime

IMPORT_RE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def importtime(py, argv, nsb, env, reps) -> list[str]:
    log("profile: -X importtime")
    if py is None:
        return ["## 2. importtime: skipped (no interpreter found)", ""]
    selfs: dict[str, list[int]] = {}
    cums: dict[str, list[int]] = {}
    totals, counts = [], []
    module_argv = [py, "-X", "importtime", "-m", "nsbox"] if "-m" in argv else [py, "-X", "importtime", argv[0]]
    for i in range(reps):
        cmd = [
            *module_argv,
            "--root",
            nsb()[nsb().index("--root") + 1],
            "-n",
            NS,
            "run",
            "--rm",
            "-a",
            f"it{i}",
            "--",
            "/bin/true",
        ]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        total = 0
        n = 0
        for line in p.stderr.splitlines():
            m = IMPORT_RE.match(line)
            if not m:
                continue
            s, c, mod = int(m.group(1)), int(m.group(2)), m.group(4)
            selfs.setdefault(mod, []).append(s)
            cums.setdefault(mod, []).append(c)
            total += s
            n += 1
        totals.append(total / 1000)
        counts.append(n)
    med_self = sorted(((statistics.median(v), k) for k, v in selfs.items()), reverse=True)
    interesting = [
        k
        for k in cums
        if k.startswith("nsbox")
        or k
        in (
            "argparse",
            "dataclasses",
            "typing",
            "re",
            "json",
            "uuid",
            "socket",
            "selectors",
            "inspect",
            "shutil",
            "threading",
            "subprocess",
            "_cffi_backend",
            "prctl",
            "encodings",
            "site",
            "tempfile",
            "platform",
        )
    ]
    lines = [
        f"## 2. `-X importtime` of `run --rm -a` (µs, median of {reps})",
        "",
        f"Modules imported: {statistics.median(counts):.0f}; sum of self times "
        f"{statistics.median(totals):.1f} ms (importtime itself inflates this).",
        "",
        "Top 25 by self time:",
        "",
        "| module | self µs |",
        "|---|---:|",
    ]
    for s, k in med_self[:25]:
        lines.append(f"| {k} | {s:.0f} |")
    lines += [
        "",
        "Cumulative (module and everything it pulled in first):",
        "",
        "| module | cumulative µs |",
        "|---|---:|",
    ]
    for k in sorted(interesting, key=lambda k: -statistics.median(cums[k])):
        lines.append(f"| {k} | {statistics.median(cums[k]):.0f} |")
    return lines + [""]


# ---------------------------------------------------------------- 3. timelines


def _probe(py, nsb, env, outdir, args, mem=False):
    e = dict(env)
    if mem:
        e["NSBENCH_TRACEMALLOC"] = "1"
    cmd = [py, os.path.join(HERE, "probe.py"), outdir, *nsb(*args)[nsb().index("--root") :]]
    return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=120)


def _marks(outdir, wait: float = 5.0) -> list:
    """The probe's marks; the watcher writes its own when its loop ends (the pod is gone)."""
    marks = []
    for f in ("timeline-cli.json", "timeline-watcher.json"):
        path = os.path.join(outdir, f)
        deadline = time.monotonic() + wait
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        if os.path.exists(path):
            time.sleep(0.02)
            with open(path) as fh:
                marks += json.load(fh)
    return marks


def timelines(py, nsb, env, work, reps) -> list[str]:
    log("profile: phase timelines")
    if py is None:
        return []
    lines = [
        f"## 3. Phase timelines (ms since the interpreter started; median of {reps}; in-process probe)",
        "",
        "The CLI's and the watcher's clocks are the same (perf_counter, CLOCK_MONOTONIC). cProfile runs "
        "in both, which inflates Python-heavy phases; compare phases with each other.",
        "",
    ]
    scenarios = [
        ("run --rm -a NAME -- /bin/true", lambda i: ["run", "--rm", "-a", f"tl{i}", "--", "/bin/true"], None),
        ("pod create NAME", lambda i: ["pod", "create", f"tp{i}"], lambda i: [f"tp{i}"]),
    ]
    for title, mk, leftover in scenarios:
        per: dict[str, list[float]] = {}
        for i in range(reps):
            d = os.path.join(work, f"tl-{title.split()[0]}-{i}")
            _probe(py, nsb, env, d, mk(i))
            if leftover:
                for name in leftover(i):
                    run(nsb("delete", "pod", name, "--grace-period=0"), env, check=False)
            for what, _pid, ms in _marks(d):
                if leftover and ("teardown" in what or "loop ended" in what):
                    continue  # after our delete: not part of the command
                per.setdefault(what, []).append(ms)
        rows = sorted(((statistics.median(v), k) for k, v in per.items()))
        lines += [f"**{title}**", "", "| phase | at ms | Δ ms |", "|---|---:|---:|"]
        prev = 0.0
        for ms, k in rows:
            lines.append(f"| {k} | {ms:.1f} | {ms - prev:+.1f} |")
            prev = ms
        lines.append("")
    # run --pod and delete: time the CLI calls around a pod that exists
    run(nsb("pod", "create", "tadd"), env)
    add, dele = [], []
    for i in range(reps):
        add.append(timed(nsb("run", f"c{i}", "--pod", "tadd", "--", "sleep", "100"), env))
    for i in range(reps):
        run(nsb("pod", "create", f"td{i}"), env)
        run(nsb("run", "c", "--pod", f"td{i}", "--", "sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"), env)
        time.sleep(0.3)
        dele.append(timed(nsb("delete", "pod", f"td{i}"), env))
    run(nsb("delete", "pod", "tadd", "--force", "--grace-period=0"), env, check=False)
    lines += [
        f"`run c --pod P -- sleep 100`: median {statistics.median(add):.0f} ms; "
        f"`delete pod` (cooperative): median {statistics.median(dele):.0f} ms; "
        "see the cProfile tables for where",
        "",
    ]
    return lines


# ---------------------------------------------------------------- 4. cProfile


def cprofile_tops(work) -> list[str]:
    lines = ["## 4. cProfile: top functions by cumulative time (one `run --rm -a`, last probe run)", ""]
    dirs = sorted(d for d in os.listdir(work) if d.startswith("tl-run-"))
    if not dirs:
        return lines + ["(no profile)", ""]
    d = os.path.join(work, dirs[-1])
    for name in ("cli.prof", "watcher.prof"):
        path = os.path.join(d, name)
        if not os.path.exists(path):
            lines += [f"{name}: missing", ""]
            continue
        st = pstats.Stats(path)
        rows = []
        for (fn, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():
            short = fn.replace("/work/main/", "").split("/lib/python3.11/")[-1]
            rows.append((ct, tt, nc, f"{short}:{line}({func})"))
        rows.sort(reverse=True)
        lines += [
            f"**{name}** (total {max(r[0] for r in rows) * 1000:.0f} ms)",
            "",
            "| cumulative ms | self ms | calls | function |",
            "|---:|---:|---:|---|",
        ]
        seen = 0
        for ct, tt, nc, f in rows:
            if "probe.py" in f or f.startswith("~") and "exec" not in f:
                continue
            lines.append(f"| {ct * 1000:.1f} | {tt * 1000:.1f} | {nc} | `{f}` |")
            seen += 1
            if seen >= 30:
                break
        lines.append("")
    return lines


# ---------------------------------------------------------------- 5. strace


def strace(nsb, env, work) -> list[str]:
    log("profile: strace")
    if not shutil.which("strace"):
        return ["## 5. strace: skipped (apt-get install strace)", ""]
    lines = ["## 5. `strace -f` of one `run --rm -a` (CLI, watcher, container)", ""]
    summary = os.path.join(work, "strace-c.txt")
    run(["strace", "-f", "-c", "-o", summary, *nsb("run", "--rm", "-a", "sc", "--", "/bin/true")], env)
    with open(summary) as f:
        table = f.read().splitlines()
    lines += [
        "`strace -c -f` (syscall counts; time is kernel time in the syscall):",
        "",
        "```",
        *table[:22],
        *[ln for ln in table if "total" in ln],
        "```",
        "",
    ]
    trace = os.path.join(work, "strace-T.txt")
    run(["strace", "-f", "-ttt", "-T", "-o", trace, *nsb("run", "--rm", "-a", "st", "--", "/bin/true")], env)
    by_call: dict[str, list[float]] = {}
    first = last = None
    pids = set()
    with open(trace) as f:
        for ln in f:
            m = re.match(r"(\d+)\s+(\d+\.\d+) (\w+)\(.*<(\d+\.\d+)>$", ln.strip())
            if not m:
                continue
            pid, ts, call, dur = int(m.group(1)), float(m.group(2)), m.group(3), float(m.group(4))
            pids.add(pid)
            first = ts if first is None else first
            last = ts
            by_call.setdefault(call, []).append(dur * 1000)
    top = sorted(((sum(v), k, len(v)) for k, v in by_call.items()), reverse=True)[:12]
    lines += [
        f"`strace -f -T` wall time in syscalls (processes: {len(pids)}, traced span "
        f"{(last - first) * 1000:.0f} ms; strace slows every call, so only shares matter):",
        "",
        "| syscall | calls | total ms in it | max ms |",
        "|---|---:|---:|---:|",
    ]
    for tot, k, n in top:
        lines.append(f"| {k} | {n} | {tot:.1f} | {max(by_call[k]):.1f} |")
    return lines + [""]


# ---------------------------------------------------------------- 6. watcher memory


def _smaps_by_mapping(pid: int) -> list[tuple[str, int, int]]:
    groups: dict[str, list[int]] = {}
    cur = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for ln in f:
                parts = ln.split()
                if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", ln):
                    name = parts[5] if len(parts) > 5 else "[anon]"
                    if name.startswith("/"):
                        name = os.path.basename(name)
                    cur = groups.setdefault(name, [0, 0])
                elif parts[0] == "Rss:" and cur is not None:
                    cur[0] += int(parts[1])
                elif parts[0] == "Pss:" and cur is not None:
                    cur[1] += int(parts[1])
    except OSError:
        return []
    return sorted(((k, v[0], v[1]) for k, v in groups.items()), key=lambda t: -t[2])


def watcher_memory(py, nsb, env, work) -> list[str]:
    log("profile: watcher memory")
    lines = ["## 6. The watcher's memory", ""]
    run(nsb("run", "mem", "--", "sleep", "100000"), env)
    run(nsb("run", "mem2", "--", "sleep", "100000"), env)
    time.sleep(1)
    from bench.common import pids_matching

    w = [p for p in pids_matching(f"nsbox-watch {NS}/mem") if True]
    if w:
        pid = w[0]
        rss, pss = smaps_rollup(pid)
        lines += [
            f"A real watcher (`nsbox-watch {NS}/mem`, two pods running): RSS {rss / 1024:.1f} MB, "
            f"PSS {pss / 1024:.1f} MB. By mapping (KiB):",
            "",
            "| mapping | RSS | PSS |",
            "|---|---:|---:|",
        ]
        for name, r, p in _smaps_by_mapping(pid)[:14]:
            lines.append(f"| {name} | {r} | {p} |")
        with open(f"/proc/{pid}/status") as f:
            st = {ln.split(":")[0]: ln.split(":", 1)[1].strip() for ln in f}
        lines += [
            "",
            f"/proc/PID/status: VmRSS {st.get('VmRSS')}, RssAnon {st.get('RssAnon')}, "
            f"RssFile {st.get('RssFile')}, Threads {st.get('Threads')}",
            "",
        ]
    for n in ("mem", "mem2"):
        run(nsb("delete", "pod", n, "--force", "--grace-period=0"), env, check=False)
    if py:
        d = os.path.join(work, "mem")
        _probe(py, nsb, env, d, ["pod", "create", "tmem"], mem=True)
        path = os.path.join(d, "watcher-mem.json")
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.1)
        if os.path.exists(path):
            time.sleep(0.2)
            with open(path) as f:
                m = json.load(f)
            nsmods = [x for x in m["modules"] if x.startswith("nsbox")]
            lines += [
                f"A watcher under tracemalloc (at its ready report): {m['n_modules']} modules in sys.modules "
                f"({len(nsmods)} of nsbox: {', '.join(nsmods)}); {m['gc_objects']} objects tracked by gc; "
                f"{m['traced_kib']} KiB of Python allocations still live; "
                f"RssAnon {m['rollup_kib'].get('Anonymous', '?')} KiB.",
                "",
                "Live allocations by the file that made them (KiB, count):",
                "",
                "| file | KiB | blocks |",
                "|---|---:|---:|",
            ]
            for fn, kib, cnt in m["top"][:25]:
                short = fn.replace("/work/main/", "").split("/lib/python3.11/")[-1]
                lines.append(f"| {short} | {kib} | {cnt} |")
            others = [x for x in m["modules"] if not x.startswith(("nsbox", "_", "encodings"))]
            lines += ["", "Modules still loaded: " + ", ".join(others), ""]
        run(nsb("delete", "pod", "tmem", "--force", "--grace-period=0"), env, check=False)
        # the floor: a bare interpreter idling, and one with the watcher's stdlib imports
        for label, code in (
            ("bare python, time.sleep", "import time; time.sleep(30)"),
            ("python -I -S, time.sleep", None),
            (
                "python + the watcher's stdlib imports",
                "import errno, heapq, itertools, json, os, "
                "selectors, signal, socket, sys, time, traceback, typing, dataclasses, re, fcntl, "
                "struct, shutil; time.sleep(30)",
            ),
        ):
            argv = [py, "-I", "-S", "-c", "import time; time.sleep(30)"] if code is None else [py, "-c", code]
            p = subprocess.Popen(argv, env=env)
            time.sleep(1.0)
            r, s = smaps_rollup(p.pid)
            p.kill()
            p.wait()
            lines.append(f"- {label}: RSS {r / 1024:.1f} MB, PSS {s / 1024:.1f} MB (alone, not shared with siblings)")
        lines.append("")
    return lines
