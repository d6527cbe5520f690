"""The Markdown table and the PNG plot of a bench run."""

from __future__ import annotations

import math
import statistics

TARGETS_NOTE = "targets of issue 8, on this machine in this run"


def _fmt(ms: float) -> str:
    if ms is None or (isinstance(ms, float) and math.isnan(ms)):
        return "–"
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}"


def _mb(kib: float) -> str:
    return f"{kib / 1024:.2f}"


def _series_by(results: dict, section: str) -> dict[str, dict[str, dict]]:
    """op -> runtime -> series dict."""
    out: dict[str, dict[str, dict]] = {}
    for s in results.get(section, []):
        out.setdefault(s["op"], {})[s["runtime"]] = s
    return out


def _median(s: dict | None) -> float:
    if not s or not s.get("samples"):
        return float("nan")
    return statistics.median(s["samples"])


def timing_table(ops: dict[str, dict[str, dict]]) -> list[str]:
    lines = []
    for op, by_rt in ops.items():
        base = _median(by_rt.get("nsbox"))
        lines += [f"**{op}** (ms)", "", "| runtime | median | min–max | n | ÷ nsbox |", "|---|---:|---:|---:|---:|"]
        for rt, s in by_rt.items():
            m = _median(s)
            if s.get("samples"):
                rng = f"{_fmt(min(s['samples']))}–{_fmt(max(s['samples']))}"
            else:
                rng = s.get("note", "") or "–"
            ratio = "1" if rt == "nsbox" else (f"{m / base:.2f}" if base == base and m == m and base else "–")
            lines.append(f"| {rt} | {_fmt(m)} | {rng} | {len(s.get('samples', []))} | {ratio} |")
        lines.append("")
    return lines


def footprint_table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    base = next((r for r in rows if r["runtime"] == "nsbox" and "overhead" in r), None)
    lines = [
        "| runtime | overhead RSS MB | overhead PSS MB | overhead procs | workload RSS MB | "
        "workload PSS MB | PSS ÷ nsbox |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['runtime']} | failed: {r['error']} ||||||")
            continue
        o, w = r["overhead"], r.get("workload")
        ratio = f"{o['pss_kib'] / base['overhead']['pss_kib']:.2f}" if base and base["overhead"]["pss_kib"] else "–"
        lines.append(
            f"| {r['runtime']} | {_mb(o['rss_kib'])} | {_mb(o['pss_kib'])} | {o['procs']:.0f} | "
            f"{_mb(w['rss_kib']) if w else '–'} | {_mb(w['pss_kib']) if w else '–'} | {ratio} |"
        )
    return lines


def _buckets(seq: list[float]) -> list[tuple[int, int, float]]:
    """(first, last, median ms) over tenths of the run."""
    n = len(seq)
    if n == 0:
        return []
    step = max(1, n // 10)
    out = []
    for a in range(0, n, step):
        chunk = seq[a : a + step]
        out.append((a + 1, a + len(chunk), statistics.median(chunk)))
    return out


def scale_lines(scales: list[dict]) -> list[str]:
    lines = []
    for r in scales:
        name, n = r["runtime"], r["n"]
        lines += [f"**{name}, N = {n}**" + (f" — error: {r['error']}" if r.get("error") else ""), ""]
        seq = r.get("seq", [])
        if seq:
            b = _buckets(seq)
            lines += ["| pods already running | create, ms per pod (median) |", "|---|---:|"]
            for a, z, m in b:
                lines.append(f"| {a - 1}–{z - 1} | {_fmt(m)} |")
            lines.append("")
            first, last = b[0][2], b[-1][2]
            lines.append(
                f"- one after another: median {_fmt(statistics.median(seq))} ms per pod; "
                f"last tenth ÷ first tenth = {last / first:.2f} (flat = 1)"
            )
        par = r.get("par", [])
        if par:
            per = [ms / k for ms, k in par]
            lines.append(
                f"- parallel batches of {r['batch']}: median {_fmt(statistics.median(per))} ms per pod "
                f"(batch wall ÷ batch size; {sum(k for _, k in par)} pods)"
            )
        for k, ms in sorted(r.get("list", {}).items(), key=lambda kv: int(kv[0])):
            mem = r.get("mem", {}).get(k) or r.get("mem", {}).get(str(k))
            extra = ""
            if mem and "watcher_pss_kib" in mem:
                extra = (
                    f"; per pod: watcher {_mb(mem['watcher_rss_kib'])} MB RSS / {_mb(mem['watcher_pss_kib'])} MB PSS, "
                    f"container {_mb(mem['container_rss_kib'])} / {_mb(mem['container_pss_kib'])} MB"
                )
            elif mem and "overhead_pss_kib" in mem:
                extra = (
                    f"; per pod: conmon×2 + catatonit {_mb(mem['overhead_rss_kib'])} MB RSS / "
                    f"{_mb(mem['overhead_pss_kib'])} MB PSS, container {_mb(mem['container_rss_kib'])} / "
                    f"{_mb(mem['container_pss_kib'])} MB"
                )
            lines.append(f"- list with {k} pods: {_fmt(ms)} ms{extra}")
        if "delete_all_ms" in r:
            lines.append(
                f"- delete all {n} (sequential run's pods): {r['delete_all_ms'] / 1000:.1f} s "
                f"({_fmt(r['delete_all_ms'] / max(1, n))} ms per pod); leftovers: "
                f"{', '.join(r.get('leftovers_seq') or []) or 'none'}"
            )
        if "delete_all_par_ms" in r:
            lines.append(
                f"- delete all {n} (parallel run's pods): {r['delete_all_par_ms'] / 1000:.1f} s; leftovers: "
                f"{', '.join(r.get('leftovers') or []) or 'none'}"
            )
        lines.append("")
    return lines


def targets(results: dict) -> list[str]:
    one = _series_by(results, "oneshot")
    ops = _series_by(results, "podops")
    rows = []

    def add(what: str, value: str, ok: bool | None) -> None:
        rows.append(f"| {what} | {value} | {'–' if ok is None else ('yes' if ok else '**no**')} |")

    o = next(iter(one.values()), {})
    nb, pm, rc = _median(o.get("nsbox")), _median(o.get("podman")), _median(o.get("runc"))
    if nb == nb:
        add(
            "one-shot ≥ 10× faster than podman's cycle",
            f"{pm / nb:.1f}×" if pm == pm else "podman skipped",
            pm / nb >= 10 if pm == pm else None,
        )
        add(
            "one-shot no slower than runc run",
            f"nsbox {_fmt(nb)} ms, runc {_fmt(rc)} ms" if rc == rc else "runc skipped",
            nb <= rc if rc == rc else None,
        )
    for op, limit, what in (
        ("pod create (sandbox, lo up)", 25, "pod create < 25 ms"),
        ("add a container to a running pod (sleep 100)", 20, "add a container < 20 ms"),
        ("delete a pod whose container exits on SIGTERM", 30, "delete of a cooperative pod < 30 ms"),
    ):
        m = _median(ops.get(op, {}).get("nsbox"))
        if m == m:
            add(what, f"{_fmt(m)} ms", m < limit)
    fp = next((r for r in results.get("footprint", []) if r["runtime"] == "nsbox" and "overhead" in r), None)
    if fp:
        rss, pss = fp["overhead"]["rss_kib"] / 1024, fp["overhead"]["pss_kib"] / 1024
        add("per-pod overhead ≤ 8 MB RSS / 3 MB PSS", f"{rss:.1f} MB RSS / {pss:.1f} MB PSS", rss <= 8 and pss <= 3)
        add("podman-class: < 1 MB PSS per pod (next goal)", f"{pss:.1f} MB PSS", pss < 1)
    sc = next((r for r in results.get("scale", []) if r["runtime"] == "nsbox"), None)
    if sc and sc.get("seq"):
        b = _buckets(sc["seq"])
        ratio = b[-1][2] / b[0][2]
        add(f"time per pod flat up to N = {sc['n']} (last tenth ÷ first ≤ 1.2)", f"{ratio:.2f}", ratio <= 1.2)
        if sc.get("list"):
            k, ms = max(sc["list"].items(), key=lambda kv: int(kv[0]))
            add(
                "`get pods` with 1000 pods < 0.5 s" + ("" if int(k) >= 1000 else f" (measured with {k})"),
                f"{_fmt(ms)} ms",
                ms < 500 if int(k) >= 1000 else None,
            )
        left = (sc.get("leftovers") or []) + (sc.get("leftovers_seq") or [])
        add("no leftovers after delete all", ", ".join(left) or "none", not left)
    return ["| target | measured | met |", "|---|---|---|", *rows]


# Issue 18's targets: nsbox no slower than a peer at the same operation, as a ratio in one run.
PAIRED = (
    ("oneshot", None, "runc", "one-shot ≤ `runc run`"),
    ("podops", "pod create (sandbox, lo up)", "runc", "pod create ≤ `runc run -d` of a pause"),
    ("podops", "add a container to a running pod (sleep 100)", "runc", "adding a container ≤ runc's"),
    ("podops", "delete a pod whose container exits on SIGTERM", "crun", "delete ≤ crun's kill + wait + delete"),
)


def paired_targets(results: dict) -> list[str]:
    """Issue 18's targets as paired ratios (nsbox's median ÷ the peer's, met at ≤ 1), cold and
    through the warm command server."""
    rows = []
    for section, op, peer, what in PAIRED:
        ops = _series_by(results, section)
        by_rt = ops.get(op, {}) if op else next(iter(ops.values()), {})
        base = _median(by_rt.get(peer))
        if base != base:
            continue
        cells, met = [], []
        for rt in ("nsbox", "nsbox warm"):
            m = _median(by_rt.get(rt))
            cells.append(f"{m / base:.2f} ({_fmt(m)} ms)" if m == m else "–")
            if m == m and m <= base:
                met.append("cold" if rt == "nsbox" else "warm")
        rows.append(f"| {what} | {_fmt(base)} ms | {' | '.join(cells)} | {', '.join(met) or '**no**'} |")
    if not rows:
        return []
    return [
        "| target (issue 18) | peer | nsbox ÷ peer | warm ÷ peer | met |",
        "|---|---:|---:|---:|---|",
        *rows,
    ]


def markdown(results: dict, png: str | None) -> str:
    m = results["meta"]
    lines = [
        f"# nsbox bench — {m['date']} ({m['mode']} run{_interrupted(m)})",
        "",
        f"- host: {m['host']}, kernel {m['kernel']}, {m['cpus']} CPUs; load average before {m['load_before']}, "
        f"after {m.get('load_after', '?')} (the machine is shared: compare ratios within this run)",
        f"- nsbox: `{m['nsbox']}` — {m['versions'].get('nsbox', '?')}; private root `{m['root']}`",
        "- peers: " + ", ".join(f"{k} ({v})" for k, v in m["versions"].items() if k != "nsbox"),
        "- skipped: " + (", ".join(f"{k}: {v}" for k, v in m["skipped"].items()) or "none"),
        f"- {m['reps']} timed repetitions per cell after 2 warm-ups, interleaved (A B C, B C A, …); "
        f"run took {m.get('minutes', '?')} min",
        "- leftovers after the final clean-up: "
        + (", ".join(f"{k}: {v}" for k, v in m.get("leftovers_after_cleanup", {}).items()) or "none"),
        "",
    ]
    target_rows = targets(results)
    if len(target_rows) > 2:  # not for a part without targets (images)
        lines += [f"## Targets ({TARGETS_NOTE})", "", *target_rows, ""]
    paired = paired_targets(results)
    if paired:
        lines += ["## Paired targets (issue 18: met at a ratio ≤ 1, in this run)", "", *paired, ""]
    if results.get("oneshot") or results.get("podops"):
        lines += ["## Times", "", "`÷ nsbox` is the runtime's median over nsbox's: above 1, nsbox is faster.", ""]
        lines += timing_table(_series_by(results, "oneshot"))
        lines += timing_table(_series_by(results, "podops"))
    if results.get("images"):
        lines += image_lines(results)
    if results.get("footprint"):
        fp = results["footprint"]
        k = fp[0].get("pods", "?") if fp else "?"
        lines += [
            "## Footprint per running pod (one `sleep` container)",
            "",
            f"Averages over {k} pods running at once, from /proc/PID/smaps_rollup. *Overhead* is what the "
            "runtime adds (nsbox: its watcher; podman: conmon ×2 + catatonit infra; runc/crun: the pause "
            "process, no monitor); *workload* is the container's own `sleep`.",
            "",
            *footprint_table(fp),
            "",
        ]
    if results.get("probes"):
        lines += probe_lines(results["probes"])
    if results.get("scale"):
        lines += ["## Scale", "", "Each pod: one container `sh -c \"trap 'exit 0' TERM; sleep 1000000 & wait\"`.", ""]
        if png:
            lines += [f"![time per pod against N]({png})", ""]
        lines += scale_lines(results["scale"])
    if results.get("quiet_delete"):
        lines += quiet_delete_lines(results["quiet_delete"])
    return "\n".join(lines) + "\n"


def quiet_delete_lines(rows: list[dict]) -> list[str]:
    """The `quiet-delete` suite: `delete pod --all` of N pods whose watchers are all nsbox-idle."""
    lines = [
        "## Deleting quiet pods",
        "",
        "N pods (one container `sh -c \"trap 'exit 0' TERM; sleep 1000000 & wait\"`), every watcher "
        "nsbox-idle, then `delete pod --all` timed once.",
        "",
        "| N | delete --all | per pod | leftovers |",
        "|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['n']} | error: {r['error']} |||")
            continue
        ms = r["delete_all_ms"]
        lines.append(f"| {r['n']} | {ms / 1000:.1f} s | {ms / r['n']:.1f} ms | {', '.join(r['leftovers']) or 'none'} |")
    return [*lines, ""]


def probe_lines(rows: list[dict]) -> list[str]:
    """The `probes` suite: memory per probed pod, sampled once a second (bench/suites.py probes)."""
    ok = [r for r in rows if "error" not in r]
    head = ok[0] if ok else {}
    lines = [
        "## Probed pods",
        "",
        f"{head.get('pods', '?')} pods at once, each a busybox httpd with a readiness and a liveness "
        f"probe every {head.get('period', '?')} s; PSS per pod from smaps_rollup, sampled once a second "
        f"({head.get('samples', '?')} samples). *Awake*: watchers in Python at a sample (of all pods).",
        "",
        "| probes | watcher PSS mean | watcher PSS max | watcher RSS mean | workload PSS | total PSS mean "
        "| awake mean | awake max | restarts |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['probe']} | error: {r['error']} ||||||||")
            continue
        o, w = r["overhead_pss_kib"], r["workload_pss_kib"]
        lines.append(
            f"| {r['probe']} | {_mb(o['mean'])} MB | {_mb(o['max'])} MB | {_mb(r['overhead_rss_kib']['mean'])} MB "
            f"| {_mb(w['mean'])} MB | {_mb(o['mean'] + w['mean'])} MB | {r['awake']['mean']:.1f} "
            f"| {r['awake']['max']} | {r['restarts']} |"
        )
    return [*lines, ""]


def image_lines(results: dict) -> list[str]:
    """The `images` suite: both runtimes load (or pull) the same image (bench/images.py)."""
    lines = [
        "## Image pods (nsbox --image, podman, the same image)",
        "",
        "`÷ nsbox` as above. Images (from their oci-archives; unpacked = the bytes of the layers' files):",
        "",
    ]
    for ref, s in results.get("images_sizes", {}).items():
        lines.append(
            f"- `{ref}`: {s['layers']} layers, {_mb(s['compressed'] / 1024)} MB compressed, "
            f"{_mb(s['unpacked'] / 1024)} MB unpacked (archive {_mb(s['archive'] / 1024)} MB)"
            + (f"; its third layer: {s['third_layer']}" if s.get("third_layer") else "")
        )
    return [*lines, "", *timing_table(_series_by(results, "images"))]


def plot(results: dict, path: str) -> str | None:
    scales = [r for r in results.get("scale", []) if r.get("seq")]
    if not scales:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    colors = {"nsbox": "tab:blue", "podman": "tab:red"}
    for r in scales:
        seq = r["seq"]
        c = colors.get(r["runtime"], None)
        xs = list(range(1, len(seq) + 1))
        ax.scatter(xs, seq, s=6, alpha=0.25, color=c)
        w = max(5, len(seq) // 20)
        med = [statistics.median(seq[max(0, i - w) : i + 1]) for i in range(len(seq))]
        ax.plot(xs, med, color=c, lw=2, label=f"{r['runtime']}: one after another (rolling median)")
        if r.get("par"):
            px, py, done = [], [], 0
            for ms, k in r["par"]:
                done += k
                px.append(done)
                py.append(ms / k)
            ax.plot(px, py, color=c, lw=1.2, ls="--", label=f"{r['runtime']}: parallel batches of {r['batch']}")
    ax.set_xlabel("N (pods running, including the new one)")
    ax.set_ylabel("time per pod created, ms (log)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"Time per pod against N — {results['meta']['date']} ({results['meta']['mode']} run)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _interrupted(meta: dict) -> str:
    return f", INTERRUPTED: {meta['interrupted']}" if meta.get("interrupted") else ""
