"""The benchmark script runs: its quick mode end to end, and one pyperf micro-benchmark.

The benchmarks themselves are not tests (timings on shared machines are noise);
these only check that ``python benchmarks/compare.py`` works, so that anyone can
reproduce the published tables. They need the ``bench`` extra.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pyperf") is None or importlib.util.find_spec("matplotlib") is None,
    reason="needs pyperf and matplotlib: pip install -e '.[bench]'",
)

#: Our own subjects, and the references the targets are ratios to, which must measure,
#: whatever happens to the peers.
OURS = {
    "call": {"ours-thread", "ours-inline", "ours-process", "ours-async", "ping-pong"},
    "call-1cpu": {"ours-thread", "ours-inline", "ping-pong", "executor-handoff"},
    "scope": {"ours-deadline"},
    "precision": {"ours-thread", "ours-inline", "ours-deadline", "ours-process"},
    "blocked": {"ours-thread", "ours-inline", "ours-deadline", "ours-process"},
    "concurrency": {"ours-thread", "ours-inline", "ours-deadline"},
    "scopes": {"ours-deadline"},
    "import": {"-", "watchdog_timeout", "asyncio"},
    "first-call": {"ours-process", "ours-thread"},
    "idle": {"ours-thread", "ours-inline", "ours-deadline", "ours-process"},
}
#: The figures of issue 12, each a target the quick run must evaluate (met or not).
ROUND_TWO = (
    "`import watchdog_timeout`: ≤",
    "`import watchdog_timeout` imports none of",
    "around a call blocked in C",
    "hand-off (pinned to one CPU): ≤ 2",
    "hand-off (unpinned)",
    'First `isolation="process"` call in a fresh program',
    "Idle process",
)


@pytest.mark.timeout(300)  # a smoke run of about 40 s, on a machine that may be loaded
def test_benchmarks_quick_run_writes_json_table_and_chart(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "compare.py"), "--quick", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["measures"]) == set(OURS)
    for measure, keys in OURS.items():
        rows = {row["subject"]: row for row in results["measures"][measure]}
        for key in keys:
            assert rows[key]["status"] == "ok", (measure, rows[key])
    assert results["meta"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert results["targets"], "no target was evaluated"
    names = [target["target"] for target in results["targets"]]
    for figure in ROUND_TWO:
        assert any(figure in name for name in names), (figure, names)
    pinned = {row["subject"]: row for row in results["measures"]["call-1cpu"]}
    assert pinned["ping-pong"]["cpus"] == [min(pinned["ping-pong"]["cpus"])], "not pinned"
    markdown = (tmp_path / "results.md").read_text()
    assert "| Target | Measured | Met |" in markdown
    for heading in ("## Machine", "against the floor", "## 7. Import", "## 8. ", "## 9. Idle"):
        assert heading in markdown, heading
    assert markdown.strip() in run.stdout
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")


def test_benchmarks_micro_runs_under_pyperf(tmp_path: Path) -> None:
    output = tmp_path / "pyperf.json"
    run = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "micro.py"),
            "--measure=call",
            "--subject=ours-inline",
            "--debug-single-value",
            "--quiet",
            f"--output={output}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    suite = json.loads(output.read_text())
    assert suite["metadata"]["name"] == "call:ours-inline"
    assert suite["benchmarks"][0]["runs"][-1]["values"][0] > 0
