"""The targets of the issues, checked against the results of ``compare.py``."""

# ruff: noqa: RUF001 (the multiplication sign marks ratios)

from __future__ import annotations

import math

from report import Results, Row, _label, _median, _ok, _rows, _us

#: Threads compared for "throughput does not collapse": the most against the fewest.
COLLAPSE_FLOOR = 0.5
#: Issue 12: the cumulative import time of ``watchdog_timeout``, seconds.
IMPORT_BUDGET = 0.025
#: Issue 12: modules ``import watchdog_timeout`` must leave to the features that need them.
LAZY = ("asyncio", "multiprocessing", "inspect")
#: Issue 12: when the caller of ``@timeout(0.1)`` around a call blocked in C has control.
ANSWER_BUDGET = 0.25
#: Issue 12: a ``@timeout`` hand-off, pinned, against the two-lock ping-pong.
FLOOR_RATIO = 2.0
#: Issue 12: what ``FLOOR_RATIO`` means against func-timeout on that machine.
FUNC_TIMEOUT_RATIO = 3.5
#: Issue 12: the first ``isolation="process"`` call in a fresh program, seconds.
FIRST_PROCESS_CALL = 0.3


def _target(name: str, measured: str, met: bool | None) -> Row:
    return {"target": name, "measured": measured, "met": met}


def _times(ratio: float) -> str:
    return f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.2g}×"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def _import_targets(results: Results) -> list[Row]:
    imports = _rows(results, "import")
    ours, asyncio = imports.get("watchdog_timeout"), imports.get("asyncio")
    if not _ok(ours):
        return []
    assert ours is not None
    cost = ours["cumulative"]
    versus = ""
    if asyncio is not None and _ok(asyncio) and asyncio["cumulative"] > 0:
        base = asyncio["cumulative"]
        versus = f" = {cost / base:.2g}× `import asyncio` ({_ms(base)}) of the same run"
    eager = [name for name in LAZY if name in ours["heavy"]]
    return [
        _target(
            f"`import watchdog_timeout`: ≤ {_ms(IMPORT_BUDGET)} (`-X importtime`, cumulative, "
            "median)",
            f"{_ms(cost)} (fastest of {ours['runs']}: {_ms(ours['cumulative_min'])}){versus}",
            cost <= IMPORT_BUDGET,
        ),
        _target(
            "`import watchdog_timeout` imports none of " + ", ".join(f"`{n}`" for n in LAZY),
            "imports " + ", ".join(f"`{n}`" for n in eager) if eager else "none of them",
            not eager,
        ),
    ]


def _handoff_targets(results: Results) -> list[Row]:
    targets = []
    for measure, where in (("call-1cpu", "pinned to one CPU"), ("call", "unpinned")):
        rows = _rows(results, measure)
        ours, floor = _median(rows.get("ours-thread")), _median(rows.get("ping-pong"))
        func, pool = _median(rows.get("func-timeout")), _median(rows.get("executor-handoff"))
        if not (ours and floor):
            continue
        pinned = measure == "call-1cpu"
        others = "".join(
            f"; {name} {_us(value)} µs ({value / floor:.2g}×)"
            for name, value in (("ThreadPoolExecutor", pool), ("func-timeout", func))
            if value
        )
        targets.append(
            _target(
                f"`@timeout` hand-off ({where}): ≤ {FLOOR_RATIO:g}× the two-lock ping-pong "
                "of the same run" + ("" if pinned else " (not a goal: cross-CPU wake-ups)"),
                f"{_us(ours)} µs = {ours / floor:.2g}× the floor of {_us(floor)} µs{others}",
                ours / floor <= FLOOR_RATIO if pinned else None,
            )
        )
        if func:
            targets.append(
                _target(
                    f"`@timeout` hand-off ({where}): ≥ {FUNC_TIMEOUT_RATIO:g}× fewer µs than "
                    "func-timeout" + ("" if pinned else " (not a goal)"),
                    f"{_us(ours)} µs vs {_us(func)} µs: {func / ours:.2g}× fewer",
                    func / ours >= FUNC_TIMEOUT_RATIO if pinned else None,
                )
            )
    return targets


def _round_two(results: Results) -> list[Row]:
    """The figures of issue 12: import, answer when blocked, hand-off, first process call."""
    targets = _import_targets(results)
    blocked = _rows(results, "blocked")
    ours, func = blocked.get("ours-thread"), blocked.get("func-timeout")
    if _ok(ours):
        assert ours is not None
        versus = f"; func-timeout {func['control']:.2f} s" if _ok(func) and func else ""
        targets.append(
            _target(
                "`@timeout(0.1)` around a call blocked in C: the caller has control within "
                f"{ANSWER_BUDGET:g} s with the default grace",
                f"{ours['control']:.2f} s (default grace {ours.get('default_grace', '?')})"
                + versus,
                ours["control"] <= ANSWER_BUDGET,
            )
        )
    targets += _handoff_targets(results)
    first = _rows(results, "first-call").get("ours-process")
    if _ok(first):
        assert first is not None
        targets.append(
            _target(
                f'First `isolation="process"` call in a fresh program: ≤ {FIRST_PROCESS_CALL:g} s',
                f"{first['first']:.3f} s (median of {first['trials']}; max "
                f"{first['first_max']:.3f} s)",
                first["first"] <= FIRST_PROCESS_CALL,
            )
        )
    idle = _rows(results, "idle")
    for key, what in (("ours-deadline", "the monitor thread"), ("ours-thread", "every thread")):
        row = idle.get(key)
        if not _ok(row):
            continue
        assert row is not None
        targets.append(
            _target(
                f"Idle process ({_label(key)}): {what} it started ends once nothing is armed "
                f"(within {row['wait']:g} s)",
                f"all ended after {row['seconds']:.1f} s"
                if row["back"]
                else f"{row['after_wait'] - row['before']} still running after {row['wait']:g} s: "
                + ", ".join(row["left"]),
                bool(row["back"]),
            )
        )
    return targets


def evaluate_targets(results: Results) -> list[Row]:
    """Each target of the issue, with the measured value and whether it is met."""
    calls, scopes = _rows(results, "call"), _rows(results, "scope")
    precision, concurrency = _rows(results, "precision"), _rows(results, "concurrency")
    armed = _rows(results, "scopes")
    targets = _round_two(results)

    reference = _median(calls.get("asyncio-timeout"))
    for key, rows, name in (
        ("ours-inline", calls, '`@timeout(isolation="inline")`'),
        ("ours-deadline", scopes, "`with deadline()`"),
    ):
        mine = _median(rows.get(key))
        base = _median(rows.get("asyncio-timeout")) if rows is scopes else reference
        if mine and base:
            targets.append(
                _target(
                    f"{name}: no slower than `asyncio.timeout`",
                    f"{_us(mine)} µs vs {_us(base)} µs ({mine / base:.2g}×)",
                    mine <= base,
                )
            )
    for key in ("ours-thread", "ours-inline", "ours-deadline"):
        row = precision.get(key)
        if row is not None and row.get("load0") and "p50" in row["load0"]:
            quiet = row["load0"]
            targets.append(
                _target(
                    f"{_label(key)}: overshoot p50 ≤ 6 ms and p99 ≤ 12 ms (no other threads)",
                    f"p50 {quiet['p50']:.2f} ms, p99 {quiet['p99']:.2f} ms "
                    f"({quiet['trials']} trials)",
                    quiet["p50"] <= 6 and quiet["p99"] <= 12,
                )
            )
    row = concurrency.get("ours-thread")
    if _ok(row):
        assert row is not None
        phases = {phase["threads"]: phase for phase in row["phases"]}
        if 1 in phases and 100 in phases:
            one, many = phases[1], phases[100]
            kept = many["calls_per_s"] / one["calls_per_s"]
            targets.append(
                _target(
                    "100 threads: throughput does not collapse "
                    f"(≥ {COLLAPSE_FLOOR:.0%} of one thread's)",
                    f"{many['calls_per_s']:,.0f} calls/s vs {one['calls_per_s']:,.0f} ({kept:.0%})",
                    kept >= COLLAPSE_FLOOR,
                )
            )
            targets.append(
                _target(
                    "100 threads: extra threads ≤ calls in flight + the monitor (101)",
                    f"{many['extra_threads']} extra threads at most",
                    many["extra_threads"] <= 100 + 1,
                )
            )
    row = armed.get("ours-deadline")
    if _ok(row):
        assert row is not None
        levels = {level["scopes"]: level for level in row["levels"] if "bytes" in level}
        if 10_000 in levels:
            most = levels[10_000]
            targets.append(
                _target(
                    "10,000 armed scopes: ≤ 300 bytes each",
                    f"{most['bytes']:.0f} bytes",
                    most["bytes"] <= 300,
                )
            )
            if 10 in levels:
                growth = most["one_more_us"] / levels[10]["one_more_us"]
                bound = math.log(10_000) / math.log(10)
                targets.append(
                    _target(
                        "Arming cost grows as O(log n) (10 → 10,000: at most "
                        f"{bound:.0f}×, the growth of log n)",
                        f"{levels[10]['one_more_us']:.2f} → {most['one_more_us']:.2f} µs "
                        f"({growth:.2g}×)",
                        growth <= bound,
                    )
                )
    mine = _median(calls.get("ours-process"))
    for key in ("pebble-process", "wrapt-timeout-decorator-process", "timeout-decorator-process"):
        theirs = _median(calls.get(key))
        if mine and theirs:
            targets.append(
                _target(
                    f'`isolation="process"`: ≥ 2× less per call than {_label(key)}',
                    f"{_us(mine)} µs vs {_us(theirs)} µs: {_times(theirs / mine)} less",
                    theirs / mine >= 2,
                )
            )
    return targets
