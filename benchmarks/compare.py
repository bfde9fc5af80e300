"""Benchmark watchdog-timeout side by side with the libraries it replaces.

    python benchmarks/compare.py            # the full run: some minutes
    python benchmarks/compare.py --quick    # a smoke run: well under a minute

Measures, each subject in processes of its own (see README.md beside this file):

1. per-call overhead of a decorated no-op (pyperf);
2. overhead of an empty scope (pyperf);
3. expiry precision of a busy loop limited to 50 ms, with 0, 1 and 4 busy threads;
4. a call blocked in C (``time.sleep``) limited to 0.1 s, with the default grace;
5. throughput of 1, 10 and 100 threads calling a decorated no-op;
6. 10 to 10,000 armed scopes: µs to arm, bytes each;
7. the cost of ``import watchdog_timeout`` next to a bare interpreter and to the
   peers' imports (``python -X importtime``, fresh interpreters);
8. the first limited call in a fresh program (process isolation and the peers);
9. whether the threads a library starts end once the program is left idle.

Table 1 and its pinned twin hold the thread hand-off figures: our ``@timeout``,
``ThreadPoolExecutor`` and func-timeout next to the floor, a raw two-lock
ping-pong between two threads, all measured in the same run.

Writes ``results.json``, ``results.md`` and ``chart.png`` to ``--output``
(default ``benchmarks/results``, or ``benchmarks/results/quick`` with
``--quick``) and prints the Markdown. A peer that is not installed, or that
fails, is reported in its row; it never stops the run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path[1:1] = [str(HERE.parent)]  # measure the checkout this script belongs to

import chart  # noqa: E402
import goals  # noqa: E402
import report  # noqa: E402
from subjects import SUBJECTS, missing_reason  # noqa: E402

Row = dict[str, Any]
#: Measures one subject: its row of the table.
Measure = Callable[[str], Row]

#: Subjects of each measure, in table order.
CALL = (
    "bare",
    "ours-thread",
    "ours-inline",
    "ours-process",
    "ours-async",
    "func-timeout",
    "stopit-thread",
    "timeout-decorator-signal",
    "timeout-decorator-process",
    "wrapt-timeout-decorator-signal",
    "wrapt-timeout-decorator-process",
    "pebble-thread",
    "pebble-process",
    "pebble-pool",
    "asyncio-timeout",
    "thread-start-join",
    "executor-handoff",
    "ping-pong",
)
#: The same, pinned to one CPU: hand-offs between threads without cross-CPU wake-ups.
CALL_ONE_CPU = (
    "bare",
    "ours-thread",
    "ours-inline",
    "func-timeout",
    "stopit-thread",
    "pebble-thread",
    "asyncio-timeout",
    "thread-start-join",
    "executor-handoff",
    "ping-pong",
)
SCOPE = ("bare-with", "ours-deadline", "asyncio-timeout", "stopit-thread", "stopit-signal")
PRECISION = (
    "ours-thread",
    "ours-inline",
    "ours-deadline",
    "ours-process",
    "func-timeout",
    "stopit-thread",
    "timeout-decorator-signal",
    "timeout-decorator-process",
    "wrapt-timeout-decorator-signal",
    "wrapt-timeout-decorator-process",
    "pebble-thread",
    "pebble-process",
    "pebble-pool",
)
#: Process modes do not compete for this process's GIL: measured without load only.
IN_PROCESS = frozenset(
    {
        "ours-thread",
        "ours-inline",
        "ours-deadline",
        "func-timeout",
        "stopit-thread",
        "timeout-decorator-signal",
        "wrapt-timeout-decorator-signal",
    }
)
#: Subjects whose row in a measure is a reason instead of a number.
NOT_APPLICABLE = {
    ("precision", "pebble-thread"): "n/a: the caller stops waiting, the work is never stopped",
}
BLOCKED = PRECISION
CONCURRENCY = (
    "ours-thread",
    "ours-inline",
    "ours-deadline",
    "func-timeout",
    "stopit-thread",
    "timeout-decorator-signal",
    "pebble-thread",
    "executor-handoff",
)
# Signal-based subjects limit the main thread only: no row with many threads.
NOT_APPLICABLE.update(
    {
        ("concurrency", key): "n/a: signals work in the main thread only"
        for key in CONCURRENCY
        if SUBJECTS[key].main_thread_only
    }
)
SCOPES = ("bare-with", "ours-deadline", "asyncio-timeout", "stopit-thread")
#: Modules whose import is measured ("-": the bare interpreter), and their packages.
IMPORTS = {
    "-": None,
    "watchdog_timeout": None,
    "asyncio": None,
    "func_timeout": "func-timeout",
    "stopit": "stopit",
    "timeout_decorator": "timeout-decorator",
    "wrapt_timeout_decorator": "wrapt-timeout-decorator",
    "pebble": "pebble",
}
FIRST_CALL = (
    "ours-process",
    "ours-thread",
    "func-timeout",
    "timeout-decorator-process",
    "wrapt-timeout-decorator-process",
    "pebble-process",
    "pebble-pool",
)
IDLE = (
    "ours-thread",
    "ours-inline",
    "ours-deadline",
    "ours-process",
    "func-timeout",
    "stopit-thread",
)


@dataclass(frozen=True)
class Settings:
    """How long each measure runs."""

    quick: bool
    pyperf_args: tuple[str, ...]
    pyperf_note: str
    precision_trials: int
    loaded_trials: int
    precision_loads: tuple[int, ...]
    precision_budget: float
    process_trials: int
    process_settle: float
    blocked_trials: int
    blocked_sleep: float
    concurrency_duration: float
    scope_rounds: int
    scope_max_threads: int
    import_runs: int
    first_call_trials: int
    idle_wait: float
    subject_timeout: float
    #: Subjects measured at once, each in its own processes: 1 but for a smoke run.
    jobs: int


FULL = Settings(
    quick=False,
    pyperf_args=("--processes", "6", "--values", "3", "--warmups", "1"),
    pyperf_note="pyperf: 6 worker processes of 3 values each, after calibration and a warm-up",
    precision_trials=200,
    loaded_trials=100,
    precision_loads=(0, 1, 4),
    precision_budget=25.0,
    process_trials=50,
    process_settle=0.2,
    blocked_trials=5,
    blocked_sleep=2.0,
    concurrency_duration=2.0,
    scope_rounds=7,
    scope_max_threads=1000,
    import_runs=15,
    first_call_trials=7,
    idle_wait=15.0,
    subject_timeout=600.0,
    jobs=1,
)
QUICK = Settings(
    quick=True,
    pyperf_args=(),
    pyperf_note="Quick run: plain timing (not pyperf), 5 batches of 10 ms in one process",
    precision_trials=5,
    loaded_trials=5,
    precision_loads=(0, 1),
    precision_budget=5.0,
    process_trials=5,
    process_settle=0.05,
    blocked_trials=1,
    blocked_sleep=1.0,
    concurrency_duration=0.1,
    scope_rounds=1,
    scope_max_threads=100,
    import_runs=1,
    first_call_trials=1,
    idle_wait=0.5,
    subject_timeout=60.0,
    jobs=3,
)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _failure(process: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in process.stderr.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else f"exit code {process.returncode}"
    return f"failed: {last[:200]}"


def _run(command: list[str], timeout: float) -> tuple[subprocess.CompletedProcess[str] | None, str]:
    try:
        process = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=HERE
        )
    except subprocess.TimeoutExpired:
        return None, f"failed: no result within {timeout:.0f} s"
    if process.returncode != 0:
        return None, _failure(process)
    return process, report.OK


# --- the pyperf measures (1, 2) ---------------------------------------------------------


def micro(measure: str, key: str, settings: Settings, *, one_cpu: bool = False) -> Row:
    """One micro-benchmark run: ``measure`` is "call" or "scope"; ``one_cpu``: pinned."""
    row: Row = {"subject": key}
    base = [sys.executable, str(HERE / "micro.py"), "--measure", measure, "--subject", key]
    if one_cpu:  # the measuring process pins itself before the subject starts a thread
        base.append("--pin-cpu")
    if settings.quick:  # plain timing in one process: no pyperf workers to start
        process, status = _run([*base, "--plain"], settings.subject_timeout)
        if process is None:
            return {**row, "status": status}
        return {**row, "status": report.OK, **json.loads(process.stdout.splitlines()[-1])}
    if importlib.util.find_spec("pyperf") is None:
        return {**row, "status": "missing: pyperf is not installed"}
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "pyperf.json"
        command = [*base, "--quiet", "--output", str(output), *settings.pyperf_args]
        process, status = _run(command, settings.subject_timeout)
        if process is None:
            return {**row, "status": status}
        # pyperf has no type information: Any. Present: it just ran.
        benchmark: Any = importlib.import_module("pyperf").Benchmark.load(str(output))
    values = benchmark.get_values()
    return {
        **row,
        "status": report.OK,
        "mean": benchmark.mean(),
        "stdev": benchmark.stdev() if len(values) > 1 else 0.0,
        "median": benchmark.median(),
        "values": len(values),
        "loops": benchmark.get_total_loops() // max(1, len(values)),
        # pyperf's record of the workers' affinity: absent when they could run anywhere
        "cpus": benchmark.get_metadata().get("cpu_affinity", "all"),
    }


# --- the plain-timing measures (3-6) ----------------------------------------------------


def plain(measure: str, key: str, settings: Settings, *options: str) -> Row:
    """One run of ``measures.py`` for one subject; its JSON, or a status."""
    command = [sys.executable, str(HERE / "measures.py"), measure, "--subject", key, *options]
    process, status = _run(command, settings.subject_timeout)
    if process is None:
        return {"status": status}
    result: Row = json.loads(process.stdout.strip().splitlines()[-1])
    return result


def precision(key: str, settings: Settings) -> Row:
    loads = settings.precision_loads if key in IN_PROCESS else (0,)
    # A pool needs a moment to replace a killed child, as it would between calls.
    in_process = key in IN_PROCESS
    settle = 0.002 if in_process else settings.process_settle
    trials = settings.precision_trials if in_process else settings.process_trials
    result = plain(
        "precision",
        key,
        settings,
        f"--trials={trials}",
        f"--loaded-trials={settings.loaded_trials}",
        f"--loads={','.join(map(str, loads))}",
        f"--budget={settings.precision_budget}",
        f"--settle={settle}",
    )
    status = result.get("status", report.OK)
    quiet = result.get("load0", {})
    if status == report.OK and "p50" not in quiet:
        status = quiet.get("status", "failed: no result")
    return {"subject": key, **result, "status": status}


def blocked(key: str, settings: Settings) -> Row:
    result = plain(
        "blocked",
        key,
        settings,
        f"--trials={settings.blocked_trials}",
        f"--sleep={settings.blocked_sleep}",
    )
    return {"subject": key, "status": report.OK, **result}


def concurrency(key: str, settings: Settings) -> Row:
    result = plain("concurrency", key, settings, f"--duration={settings.concurrency_duration}")
    phases = result.get("phases", [])
    status = next((p["status"] for p in phases if "status" in p), result.get("status", report.OK))
    return {"subject": key, **result, "status": status}


def armed_scopes(key: str, settings: Settings) -> Row:
    result = plain(
        "scopes",
        key,
        settings,
        f"--rounds={settings.scope_rounds}",
        f"--max-threads={settings.scope_max_threads}",
    )
    return {"subject": key, "status": report.OK, **result}


# --- the fresh-program measures (7-9) ----------------------------------------------------


def _fresh(settings: Settings, *arguments: str) -> Row:
    """One run of ``fresh.py``: its JSON, or a status."""
    command = [sys.executable, str(HERE / "fresh.py"), *arguments]
    process, status = _run(command, settings.subject_timeout)
    if process is None:
        return {"status": status}
    result: Row = json.loads(process.stdout.strip().splitlines()[-1])
    return {"status": report.OK, **result}


def import_cost(module: str, settings: Settings) -> Row:
    options = ["--no-warm-up"] if settings.quick else []
    result = _fresh(
        settings, "import", f"--module={module}", f"--runs={settings.import_runs}", *options
    )
    return {"subject": module, **result}


def first_call(key: str, settings: Settings) -> Row:
    """The first limited call, each trial in a fresh program: medians of the trials."""
    trials = [_fresh(settings, "first-call", f"--subject={key}")]
    while len(trials) < settings.first_call_trials and trials[-1]["status"] == report.OK:
        trials.append(_fresh(settings, "first-call", f"--subject={key}"))
    failed = [trial for trial in trials if trial["status"] != report.OK]
    if failed:
        return {"subject": key, "status": failed[0]["status"]}
    return {
        "subject": key,
        "status": report.OK,
        "trials": len(trials),
        **{
            name: statistics.median(trial[name] for trial in trials)
            for name in ("setup", "first", "second")
        },
        "first_max": max(trial["first"] for trial in trials),
    }


def idle(key: str, settings: Settings) -> Row:
    return {
        "subject": key,
        **_fresh(settings, "idle", f"--subject={key}", f"--wait={settings.idle_wait}"),
    }


# --- the run ------------------------------------------------------------------------------


def _cpuinfo() -> dict[str, str]:
    """The first CPU's fields in /proc/cpuinfo (Linux), or nothing."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.split("\n\n", 1)[0].splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return fields


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _load() -> str:
    return " / ".join(f"{load:.2f}" for load in os.getloadavg())


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def _checkout() -> str:
    """The commit measured, and whether the package differs from it (read-only git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=HERE.parent,
            timeout=10,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "watchdog_timeout"],
            capture_output=True,
            text=True,
            check=True,
            cwd=HERE.parent,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit} (with local changes)" if changed else commit


def machine() -> dict[str, Any]:
    """The Python, the machine and the date, and the version of every library."""
    distributions = sorted({s.distribution for s in SUBJECTS.values() if s.distribution})
    cpu = _cpuinfo()
    getaffinity = getattr(os, "sched_getaffinity", None)  # Linux only
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "python_build": " ".join(platform.python_build()),
        "python_compiler": platform.python_compiler(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus": ",".join(map(str, sorted(getaffinity(0)))) if getaffinity else "?",
        "cpu_model": cpu.get("model name") or platform.processor() or "unknown CPU",
        "cpu_mhz": cpu.get("cpu MHz", "?"),
        "cpu_cache": cpu.get("cache size", "?"),
        "virtual": "hypervisor" in cpu.get("flags", "").split() if cpu else None,
        "memory": _memory(),
        "load_average": _load(),
        "switch_interval_s": sys.getswitchinterval(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _checkout(),
        "versions": {
            "watchdog-timeout": _version("watchdog-timeout"),
            "pyperf": _version("pyperf"),
            **{name: _version(name) for name in distributions},
        },
    }


MEASURES = (
    "call",
    "call-1cpu",
    "scope",
    "precision",
    "blocked",
    "concurrency",
    "scopes",
    "import",
    "first-call",
    "idle",
)


def _reason(measure: str, key: str) -> str | None:
    """Why ``key`` has no number in ``measure`` on this machine, or None."""
    if measure == "import":
        distribution = IMPORTS[key]
        if key != "-" and importlib.util.find_spec(key) is None:
            return f"missing: {distribution or key} is not installed"
        return None
    reason = NOT_APPLICABLE.get((measure, key)) or missing_reason(SUBJECTS[key])
    if measure == "call-1cpu" and not reason and not hasattr(os, "sched_setaffinity"):
        reason = "n/a: no CPU affinity on this system"
    return reason


def run(settings: Settings, only: tuple[str, ...]) -> dict[str, Any]:
    """Run every measure of ``only`` over its subjects; the results, targets included."""
    plan: dict[str, tuple[tuple[str, ...], Measure]] = {
        "call": (CALL, lambda key: micro("call", key, settings)),
        "call-1cpu": (CALL_ONE_CPU, lambda key: micro("call", key, settings, one_cpu=True)),
        "scope": (SCOPE, lambda key: micro("scope", key, settings)),
        "precision": (PRECISION, lambda key: precision(key, settings)),
        "blocked": (BLOCKED, lambda key: blocked(key, settings)),
        "concurrency": (CONCURRENCY, lambda key: concurrency(key, settings)),
        "scopes": (SCOPES, lambda key: armed_scopes(key, settings)),
        "import": (tuple(IMPORTS), lambda module: import_cost(module, settings)),
        "first-call": (FIRST_CALL, lambda key: first_call(key, settings)),
        "idle": (IDLE, lambda key: idle(key, settings)),
    }
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": machine(),
        "settings": asdict(settings),
        "measures": {},
        "durations_s": {},
    }
    for measure in only:
        keys, measure_one = plan[measure]

        def one(key: str, measure: str = measure, measure_one: Measure = measure_one) -> Row:
            reason = _reason(measure, key)
            return {"subject": key, "status": reason} if reason else measure_one(key)

        # Subjects pinned to one CPU share that CPU: one at a time, even in a smoke run.
        workers = 1 if measure == "call-1cpu" else settings.jobs
        rows = []
        begun = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as jobs:
            for key, row in zip(keys, jobs.map(one, keys)):  # in table order
                _progress(f"[{measure}] {key}: {_summary(row)}")
                rows.append(row)
        results["measures"][measure] = rows
        results["durations_s"][measure] = time.monotonic() - begun
    results["duration_s"] = time.monotonic() - started
    results["load_average_end"] = _load()
    results["targets"] = goals.evaluate_targets(results)
    return results


def _summary(row: Row) -> str:
    if row.get("status", report.OK) != report.OK:
        return str(row["status"])
    if "median" in row:
        return f"{row['median'] * 1e6:.3g} µs"
    if "load0" in row:
        return f"p50 {row['load0']['p50']:.3g} ms, p99 {row['load0']['p99']:.3g} ms"
    if "control" in row:
        return f"control after {row['control']:.2f} s, work {row['work']}"
    if "phases" in row:
        return ", ".join(f"{p['threads']}: {p['calls_per_s']:,.0f}/s" for p in row["phases"])
    if "wall" in row:
        return (
            f"{row['cumulative'] * 1e3:.3g} ms cumulative, interpreter {row['wall'] * 1e3:.3g} ms"
        )
    if "first" in row:
        return f"first call {row['first'] * 1e3:.3g} ms, then {row['second'] * 1e3:.3g} ms"
    if "back" in row:
        return f"threads {row['before']} → {row['after_use']} → {row['after_wait']}: {row['left']}"
    return "done"


def _write(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def save(results: dict[str, Any], output: Path) -> str:
    """Write results.json, results.md and (with matplotlib) chart.png; return the Markdown."""
    output.mkdir(parents=True, exist_ok=True)
    _write(output / "results.json", json.dumps(results, indent=1) + "\n")
    text = report.markdown(results)
    if importlib.util.find_spec("matplotlib") is None:
        _progress("matplotlib is not installed: no chart")
    else:
        chart.chart(results, output / "chart.png")
        text += "\n![Benchmarks chart](chart.png)\n"
    _write(output / "results.md", text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark watchdog-timeout side by side with the peer libraries."
    )
    parser.add_argument("--quick", action="store_true", help="few trials: a smoke run")
    parser.add_argument("--output", type=Path, help="folder for results.json/.md, chart.png")
    parser.add_argument(
        "--only",
        default=",".join(MEASURES),
        help=f"comma-separated measures to run, of: {','.join(MEASURES)}",
    )
    args = parser.parse_args(argv)
    only = tuple(name for name in args.only.split(",") if name)
    unknown = set(only) - set(MEASURES)
    if unknown:
        parser.error(f"unknown measures: {', '.join(sorted(unknown))}")
    settings = QUICK if args.quick else FULL
    output = args.output or HERE / "results" / ("quick" if args.quick else "")
    results = run(settings, only)
    print(save(results, output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
