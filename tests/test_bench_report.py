"""The bench's report of issue 18's paired targets (bench/report.py): ratios in one run."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import report  # noqa: E402


def series(section_op: str, runtime: str, *samples: float) -> dict:
    return {"op": section_op, "runtime": runtime, "samples": list(samples)}


def test_paired_targets_are_ratios_to_the_peer_met_cold_or_warm():
    results = {
        "oneshot": [
            series("one-shot", "nsbox", 80, 90, 100),
            series("one-shot", "nsbox warm", 40, 50, 60),
            series("one-shot", "runc", 20, 25, 30),
        ],
        "podops": [
            series("pod create (sandbox, lo up)", "nsbox", 60),
            series("pod create (sandbox, lo up)", "nsbox warm", 29),
            series("pod create (sandbox, lo up)", "runc", 30),
            series("delete a pod whose container exits on SIGTERM", "nsbox", 40),
            series("delete a pod whose container exits on SIGTERM", "crun", 45),
        ],
    }
    rows = report.paired_targets(results)
    assert rows[2] == "| one-shot ≤ `runc run` | 25.0 ms | 3.60 (90.0 ms) | 2.00 (50.0 ms) | **no** |"
    assert rows[3] == "| pod create ≤ `runc run -d` of a pause | 30.0 ms | 2.00 (60.0 ms) | 0.97 (29.0 ms) | warm |"
    # No warm row (the server skipped): its cell says so; the cold one meets the target alone.
    assert rows[4] == "| delete ≤ crun's kill + wait + delete | 45.0 ms | 0.89 (40.0 ms) | – | cold |"
    assert len(rows) == 5, "adding a container has no runc row here: no target row"


def test_no_paired_targets_without_peers():
    assert report.paired_targets({"oneshot": [series("one-shot", "nsbox", 80)]}) == []
