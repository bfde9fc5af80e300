"""Turn the results of ``compare.py`` into the targets, the Markdown tables and the chart."""

# ruff: noqa: RUF001, RUF002 (the multiplication sign marks ratios in the tables)

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from subjects import SUBJECTS

Results = dict[str, Any]
Row = dict[str, Any]

#: Threads compared for "throughput does not collapse": the most against the fewest.
COLLAPSE_FLOOR = 0.5

OK = "ok"


def _label(key: str) -> str:
    return SUBJECTS[key].label


def _rows(results: Results, measure: str) -> dict[str, Row]:
    return {row["subject"]: row for row in results["measures"].get(measure, [])}


def _ok(row: Row | None) -> bool:
    return row is not None and row.get("status", OK) == OK


def _us(seconds: float) -> str:
    us = seconds * 1e6
    if us >= 1000:
        return f"{us:,.0f}"
    return f"{us:.3g}" if us < 10 else f"{us:.1f}"


def _ratio(value: float, base: float | None) -> str:
    if base is None or base <= 0:
        return "—"
    ratio = value / base
    return f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.2g}×"


def _ms(value: float | None) -> str:
    return "—" if value is None else (f"{value:,.0f}" if value >= 100 else f"{value:.3g}")


def _median(row: Row | None) -> float | None:
    return row["median"] if row is not None and _ok(row) else None


# --- targets ----------------------------------------------------------------------


def _target(name: str, measured: str, met: bool | None) -> Row:
    return {"target": name, "measured": measured, "met": met}


def evaluate_targets(results: Results) -> list[Row]:
    """Each target of the issue, with the measured value and whether it is met."""
    calls, scopes = _rows(results, "call"), _rows(results, "scope")
    precision, concurrency = _rows(results, "precision"), _rows(results, "concurrency")
    armed = _rows(results, "scopes")
    targets: list[Row] = []

    for rows, where in ((calls, "2 CPUs"), (_rows(results, "call-1cpu"), "pinned to 1 CPU")):
        ours, func = _median(rows.get("ours-thread")), _median(rows.get("func-timeout"))
        if ours and func:
            targets.append(
                _target(
                    f"`@timeout` (thread): ≥ 4× fewer µs per call than func-timeout ({where})",
                    f"{_us(ours)} µs vs {_us(func)} µs: {func / ours:.2g}× fewer",
                    func / ours >= 4,
                )
            )
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
                    f"{_us(mine)} µs vs {_us(theirs)} µs: {theirs / mine:.2g}× less",
                    theirs / mine >= 2,
                )
            )
    return targets


# --- Markdown ---------------------------------------------------------------------------


def _status_cell(row: Row) -> str:
    return str(row.get("status", "")).replace("|", "/")


def _micro_table(results: Results, measure: str, bare: str, ours: str) -> list[str]:
    rows = _rows(results, measure)
    base, mine = _median(rows.get(bare)), _median(rows.get(ours))
    unit = "per scope" if measure == "scope" else "per call"
    lines = [
        f"| Library / mode | µs {unit}, mean ± std | median | × {_label(bare)} "
        f"| × {_label(ours)} | Notes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for key, row in rows.items():
        note = SUBJECTS[key].note
        if not _ok(row):
            lines.append(f"| {_label(key)} | {_status_cell(row)} | | | | {note} |")
            continue
        median = row["median"]
        lines.append(
            f"| {_label(key)} | {_us(row['mean'])} ± {_us(row['stdev'])} | {_us(median)} "
            f"| {_ratio(median, base)} | {_ratio(median, mine)} | {note} |"
        )
    return lines


def _precision_table(results: Results) -> list[str]:
    lines = [
        "| Library / mode | p50 | p90 | p99 | max | trials "
        "| p50 / p99, 1 busy thread | p50 / p99, 4 busy threads |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in _rows(results, "precision").items():
        if not _ok(row):
            lines.append(f"| {_label(key)} | {_status_cell(row)} | | | | | | |")
            continue
        cells = []
        quiet = row.get("load0", {})
        if "p50" in quiet:
            cells = [_ms(quiet[name]) for name in ("p50", "p90", "p99", "max")]
            cells.append(str(quiet["trials"]))
        else:
            cells = [quiet.get("status", "—"), "", "", "", ""]
        for load in ("load1", "load4"):
            busy = row.get(load)
            if busy is None:
                cells.append("—")
            elif "p50" in busy:
                failed = f" ({busy['status']})" if "status" in busy else ""
                cells.append(f"{_ms(busy['p50'])} / {_ms(busy['p99'])}{failed}")
            else:
                cells.append(str(busy.get("status", "—")))
        lines.append(f"| {_label(key)} | " + " | ".join(cells) + " |")
    return lines


_WORK = {
    "stopped": "stopped at the limit",
    "running": "still running (abandoned)",
    "finished": "ran to the end",
    "never started": "never started",
}


def _blocked_table(results: Results) -> list[str]:
    lines = [
        "| Library / mode | caller has control after (s) | the work | Notes |",
        "|---|---:|---|---|",
    ]
    for key, row in _rows(results, "blocked").items():
        if not _ok(row):
            lines.append(f"| {_label(key)} | {_status_cell(row)} | | |")
            continue
        work = _WORK.get(row["work"], row["work"])
        lines.append(f"| {_label(key)} | {row['control']:.2f} | {work} | {SUBJECTS[key].note} |")
    return lines


def _concurrency_table(results: Results) -> list[str]:
    rows = _rows(results, "concurrency")
    counts: list[int] = []
    for row in rows.values():
        for phase in row.get("phases", []):
            if phase["threads"] not in counts:
                counts.append(phase["threads"])
    mine = rows.get("ours-thread")
    mine_rates = {p["threads"]: p["calls_per_s"] for p in (mine or {}).get("phases", [])}
    header = " | ".join(f"calls/s, {n} thread{'s' if n > 1 else ''}" for n in counts)
    extra = " / ".join(str(n) for n in counts)
    most = counts[-1] if counts else 0
    lines = [
        f"| Library / mode | {header} | × {_label('ours-thread')} at {most} "
        f"| extra threads at {extra} |",
        "|---|" + "---:|" * (len(counts) + 2),
    ]
    for key, row in rows.items():
        if not _ok(row):
            lines.append(f"| {_label(key)} | {_status_cell(row)} |" + " |" * (len(counts) + 1))
            continue
        phases = {p["threads"]: p for p in row["phases"]}
        rates = [f"{phases[n]['calls_per_s']:,.0f}" if n in phases else "—" for n in counts]
        ratio = "—"
        if most in phases and mine_rates.get(most):
            ratio = _ratio(phases[most]["calls_per_s"], mine_rates[most])
        extras = " / ".join(str(phases[n]["extra_threads"]) if n in phases else "—" for n in counts)
        lines.append(f"| {_label(key)} | " + " | ".join(rates) + f" | {ratio} | {extras} |")
    return lines


def _scopes_table(results: Results) -> list[str]:
    rows = _rows(results, "scopes")
    sizes: list[int] = []
    for row in rows.values():
        for level in row.get("levels", []):
            if level["scopes"] not in sizes:
                sizes.append(level["scopes"])
    lines = [
        "| Scope | " + " | ".join(f"{n:,} armed" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for key, row in rows.items():
        if not _ok(row):
            lines.append(f"| {_label(key)} | {_status_cell(row)} |" + " |" * (len(sizes) - 1))
            continue
        cells = []
        for level in row["levels"]:
            if "bytes" in level:
                cells.append(f"{level['one_more_us']:.2g} µs · {level['bytes']:,.0f} B")
            else:
                cells.append(str(level.get("status", "—")))
        lines.append(f"| {_label(key)} | " + " | ".join(cells) + " |")
    return lines


def machine_line(meta: dict[str, Any]) -> str:
    """One line: the Python, the machine and the date the results came from."""
    return (
        f"{meta['implementation']} {meta['python']} on {meta['platform']}, "
        f"{meta['cpu_count']} CPUs ({meta['cpu_model']}), {meta['date']}"
    )


def markdown(results: Results) -> str:
    """The whole report: targets, then one table per measure."""
    meta, settings = results["meta"], results["settings"]
    mode = (
        "quick run: few trials, for a smoke test, not for publication"
        if settings["quick"]
        else ("full run")
    )
    out = [
        "# watchdog-timeout: benchmarks side by side with the peer libraries",
        "",
        f"{machine_line(meta)}; watchdog-timeout {meta['versions']['watchdog-timeout']} at "
        f"commit {meta['commit']}; {mode}, {results['duration_s'] / 60:.1f} min. "
        f"Load average at the start: {meta['load_average']}.",
        "",
        "Peers: "
        + ", ".join(
            f"{name} {version}"
            for name, version in meta["versions"].items()
            if name not in ("watchdog-timeout",)
        )
        + ". Each subject runs in processes of its own: no library is imported beside "
        "another.",
        "",
        "## Targets",
        "",
        "| Target | Measured | Met |",
        "|---|---|---|",
    ]
    for target in results["targets"]:
        met = {True: "yes", False: "**no**", None: "—"}[target["met"]]
        out.append(f"| {target['target']} | {target['measured']} | {met} |")
    pyperf_note = settings["pyperf_note"]
    out += [
        "",
        "## 1. Per-call overhead: a decorated no-op, 10 s limit",
        "",
        f"{pyperf_note}; ratios are of medians.",
        "",
        *_micro_table(results, "call", "bare", "ours-thread"),
        "",
        "### The same, with the process pinned to one CPU",
        "",
        "A hand-off to another thread costs two wake-ups; across CPUs of a virtual machine "
        "each can cost tens of µs, and which CPU a thread wakes on changes from run to run. "
        "Pinned to one CPU, the thread-based rows lose that noise.",
        "",
        *_micro_table(results, "call-1cpu", "bare", "ours-thread"),
        "",
        "## 2. Scope overhead: an empty block, 10 s limit",
        "",
        f"{pyperf_note}; ratios are of medians.",
        "",
        *_micro_table(results, "scope", "bare-with", "ours-deadline"),
        "",
        "## 3. Expiry precision: a pure-Python busy loop limited to 50 ms",
        "",
        "Milliseconds past the 50 ms limit until the caller has control again, from the "
        "call (process modes: including the hand-off to a child). "
        f"{settings['precision_trials']} trials per row ({settings['process_trials']} for "
        "process modes, with a pause after each for the pool to replace the killed child; "
        f"{settings['loaded_trials']} with busy threads), fewer only where a row took over "
        f"{settings['precision_budget']:g} s. Busy threads spin in pure Python beside the "
        "call (process modes are measured without them).",
        "",
        *_precision_table(results),
        "",
        f"## 4. Blocked in C: `time.sleep({settings['blocked_sleep']:g})` limited to 0.1 s",
        "",
        "Median of "
        f"{settings['blocked_trials']} trial(s); the work is looked at 50 ms after the "
        "caller has control.",
        "",
        *_blocked_table(results),
        "",
        "## 5. Concurrency: N threads calling a decorated no-op (10 s limit)",
        "",
        f"{settings['concurrency_duration']:g} s per phase; extra threads: the peak number "
        "of OS threads beyond the callers and the main thread.",
        "",
        *_concurrency_table(results),
        "",
        "## 6. Many armed scopes: nested, all armed at once (10 s limit)",
        "",
        "Each cell: µs to arm one more scope on top of n (median of 200), and bytes per "
        "armed scope (tracemalloc: the scope, its timer entry; for stopit the timer "
        "thread's Python objects, not its stack).",
        "",
        *_scopes_table(results),
        "",
    ]
    return "\n".join(out)


# --- the chart ------------------------------------------------------------------------

_COLOURS = {"ours": "#2a9d8f", "peer": "#e76f51", "reference": "#8d99ae"}


def _bars(axis: Any, rows: dict[str, Row], value: str, scale: float, title: str) -> None:
    ok = [(key, row) for key, row in rows.items() if _ok(row) and value in row]
    ok.sort(key=lambda item: item[1][value])
    labels = [_label(key) for key, _ in ok]
    values = [row[value] * scale for _, row in ok]
    colours = [_COLOURS[SUBJECTS[key].kind] for key, _ in ok]
    axis.barh(labels, values, color=colours)
    axis.set_xscale("log")
    axis.set_title(title, fontsize=10)
    axis.tick_params(axis="y", labelsize=8)
    for index, number in enumerate(values):
        axis.text(number, index, f" {number:.3g}", va="center", fontsize=7)


def chart(results: Results, path: Path) -> None:
    """A 2×2 PNG: per-call cost, scope cost, expiry overshoot, throughput."""
    import matplotlib  # noqa: PLC0415 (optional: only to draw)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(2, 2, figsize=(14, 10))
    _bars(axes[0][0], _rows(results, "call"), "median", 1e6, "Per-call overhead, µs (median, log)")
    _bars(axes[0][1], _rows(results, "scope"), "median", 1e6, "Empty scope, µs (median, log)")
    quiet = {
        key: {**row["load0"], "subject": key}
        for key, row in _rows(results, "precision").items()
        if _ok(row) and "p50" in row.get("load0", {})
    }
    _bars(axes[1][0], quiet, "p99", 1.0, "Expiry overshoot past 50 ms, ms: p99 (bar), p50 (dot)")
    ordered = sorted(quiet, key=lambda key: quiet[key]["p99"])
    axes[1][0].plot([quiet[key]["p50"] for key in ordered], range(len(ordered)), "ko", markersize=3)
    axis = axes[1][1]
    for key, row in _rows(results, "concurrency").items():
        if not _ok(row):
            continue
        threads = [phase["threads"] for phase in row["phases"]]
        rates = [phase["calls_per_s"] for phase in row["phases"]]
        style = "-o" if SUBJECTS[key].kind == "ours" else "--o"
        axis.plot(threads, rates, style, label=_label(key), markersize=4)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("caller threads")
    axis.set_title("Throughput, calls/s of a limited no-op (log)", fontsize=10)
    if axis.lines:
        axis.legend(fontsize=7)
    figure.suptitle("watchdog-timeout vs peers: " + machine_line(results["meta"]), fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
