"""Turn the results of ``compare.py`` into the Markdown report."""

# ruff: noqa: RUF001 (the multiplication sign marks ratios in the tables)

from __future__ import annotations

from typing import Any

from subjects import SUBJECTS

Results = dict[str, Any]
Row = dict[str, Any]

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


# --- Markdown ---------------------------------------------------------------------------


def _status_cell(row: Row) -> str:
    return str(row.get("status", "")).replace("|", "/")


def _micro_table(results: Results, measure: str, references: tuple[str, ...]) -> list[str]:
    """One row per subject: mean ± std, median, and the median's ratio to each reference."""
    rows = _rows(results, measure)
    bases = [_median(rows.get(key)) for key in references]
    unit = "per scope" if measure == "scope" else "per call"
    lines = [
        f"| Library / mode | µs {unit}, mean ± std | median | "
        + " | ".join(f"× {_label(key)}" for key in references)
        + " | Notes |",
        "|---|---:|---:|" + "---:|" * len(references) + "---|",
    ]
    for key, row in rows.items():
        note = SUBJECTS[key].note
        if not _ok(row):
            lines.append(f"| {_label(key)} | {_status_cell(row)} | |" + " |" * len(references))
            lines[-1] += f" {note} |"
            continue
        median = row["median"]
        ratios = " | ".join(_ratio(median, base) for base in bases)
        lines.append(
            f"| {_label(key)} | {_us(row['mean'])} ± {_us(row['stdev'])} | {_us(median)} "
            f"| {ratios} | {note} |"
        )
    return lines


#: The thread hand-offs compared with the floor, in table order.
HANDOFF = (
    "ping-pong",
    "ours-thread",
    "executor-handoff",
    "func-timeout",
    "pebble-thread",
    "thread-start-join",
    "stopit-thread",
)


def _handoff_table(results: Results) -> list[str]:
    """Per-call cost of each hand-off, pinned and unpinned, as ratios to the ping-pong."""
    pinned, unpinned = _rows(results, "call-1cpu"), _rows(results, "call")
    floors = _median(pinned.get("ping-pong")), _median(unpinned.get("ping-pong"))
    lines = [
        "| Hand-off | µs pinned to one CPU | × floor, pinned | µs unpinned "
        "| × floor, unpinned | unpinned ÷ pinned |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key in HANDOFF:
        if key not in pinned and key not in unpinned:
            continue
        one, two = _median(pinned.get(key)), _median(unpinned.get(key))
        cells = []
        for value, floor, row in ((one, floors[0], pinned), (two, floors[1], unpinned)):
            if value is None:
                cells += [_status_cell(row.get(key, {"status": "not measured"})), ""]
            else:
                cells += [_us(value), _ratio(value, floor)]
        cells.append(_ratio(two, one) if one and two else "—")
        lines.append(f"| {_label(key)} | " + " | ".join(cells) + " |")
    return lines


def _import_table(results: Results) -> list[str]:
    rows = _rows(results, "import")
    asyncio, bare = rows.get("asyncio"), rows.get("-")
    base = asyncio["cumulative"] if asyncio is not None and _ok(asyncio) else None
    start = bare["wall"] if bare is not None and _ok(bare) else None
    lines = [
        "| Import | ms, cumulative (`-X importtime`), median | min – max | × `import asyncio` "
        "| ms, interpreter start to exit | beyond the bare interpreter | modules imported "
        "| of them heavy |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for module, row in rows.items():
        label = "bare interpreter (`-c pass`)" if module == "-" else f"`import {module}`"
        if not _ok(row):
            lines.append(f"| {label} | {_status_cell(row)} |" + " |" * 6)
            continue
        wall = row["wall"] * 1e3
        extra = "—" if start is None or module == "-" else f"+{_ms(wall - start * 1e3)} ms"
        if module == "-":
            cells = ["—", "—", "—"]
        else:
            cells = [
                _ms(row["cumulative"] * 1e3),
                f"{_ms(row['cumulative_min'] * 1e3)} – {_ms(row['cumulative_max'] * 1e3)}",
                _ratio(row["cumulative"], base),
            ]
        heavy = ", ".join(row["heavy"]) or "none"
        lines.append(
            f"| {label} | " + " | ".join(cells) + f" | {_ms(wall)} | {extra} "
            f"| {row['modules'] if module != '-' else '—'} | {heavy if module != '-' else '—'} |"
        )
    return lines


def _first_call_table(results: Results) -> list[str]:
    lines = [
        "| Library / mode | import and decorate, ms | first call, ms (median) | max "
        "| second call, ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, row in _rows(results, "first-call").items():
        if not _ok(row):
            lines.append(f"| {_label(key)} | {_status_cell(row)} | | | |")
            continue
        lines.append(
            f"| {_label(key)} | {_ms(row['setup'] * 1e3)} | {_ms(row['first'] * 1e3)} "
            f"| {_ms(row['first_max'] * 1e3)} | {_ms(row['second'] * 1e3)} |"
        )
    return lines


def _idle_table(results: Results) -> list[str]:
    lines = [
        "| Library / mode | threads before | after the calls | after waiting "
        "| back to the start | threads still running |",
        "|---|---:|---:|---:|---|---|",
    ]
    for key, row in _rows(results, "idle").items():
        if not _ok(row):
            lines.append(f"| {_label(key)} | {_status_cell(row)} | | | | |")
            continue
        back = (
            f"yes, after {row['seconds']:.2f} s" if row["back"] else f"no, after {row['wait']:g} s"
        )
        left = ", ".join(f"`{name}`" for name in row["left"]) or "—"
        lines.append(
            f"| {_label(key)} | {row['before']} | {row['after_use']} | {row['after_wait']} "
            f"| {back} | {left} |"
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
    rows = _rows(results, "blocked")
    func = rows.get("func-timeout")
    base = func["control"] if func is not None and _ok(func) else None
    lines = [
        "| Library / mode | caller has control after (s), median | max | × func-timeout "
        "| the work | Notes |",
        "|---|---:|---:|---:|---|---|",
    ]
    for key, row in rows.items():
        if not _ok(row):
            lines.append(f"| {_label(key)} | {_status_cell(row)} | | | | |")
            continue
        work = _WORK.get(row["work"], row["work"])
        lines.append(
            f"| {_label(key)} | {row['control']:.2f} | {row['control_max']:.2f} "
            f"| {_ratio(row['control'], base)} | {work} | {SUBJECTS[key].note} |"
        )
    return lines


def _default_grace(results: Results) -> str:
    for row in _rows(results, "blocked").values():
        if "default_grace" in row:
            return f"`@timeout`'s default `grace`: {row['default_grace']} s. "
    return ""


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


def _machine_section(results: Results) -> list[str]:
    """What the numbers were measured on, as far as this process can tell."""
    meta = results["meta"]
    virtual = {True: "yes (the CPU reports a hypervisor)", False: "no", None: "unknown"}
    return [
        "## Machine",
        "",
        f"- CPU: {meta['cpu_model']}, {meta['cpu_count']} logical CPUs "
        f"(this process may run on {meta.get('cpus', '?')}); "
        f"{meta.get('cpu_mhz', '?')} MHz, cache {meta.get('cpu_cache', '?')}",
        f"- Virtual machine: {virtual[meta.get('virtual')]}",
        f"- Memory: {meta.get('memory', '?')}",
        f"- System: {meta['platform']}",
        f"- Python: {meta['implementation']} {meta['python']} "
        f"({meta.get('python_build', '?')}; {meta.get('python_compiler', '?')}), "
        f"switch interval {meta['switch_interval_s'] * 1e3:g} ms",
        f"- Load average (1 / 5 / 15 min): {meta['load_average']} at the start, "
        f"{results.get('load_average_end', '?')} at the end",
        f"- Date: {meta['date']}; the run took {results['duration_s'] / 60:.1f} min",
    ]


def _round_two_sections(results: Results) -> list[str]:
    """Tables 7 to 9: the import, the first call, the idle process."""
    settings = results["settings"]
    return [
        "## 7. Import cost",
        "",
        f"Each row: {settings['import_runs']} fresh interpreters with `python -X importtime "
        f'-c "import <module>"` (the cumulative time CPython reports for the module), then '
        f"{settings['import_runs']} without `-X importtime`, timed from start to exit, after "
        "one untimed run that writes the bytecode caches; medians. Heavy modules: those of "
        "`asyncio`, `multiprocessing`, `concurrent.futures`, `inspect`, `ctypes`, "
        "`subprocess`, `wrapt` the import pulls in.",
        "",
        *_import_table(results),
        "",
        '## 8. The first limited call in a fresh program (`isolation="process"` and the peers)',
        "",
        f"Each trial a new program ({settings['first_call_trials']} trials, medians): import "
        "the library and decorate a no-op (10 s limit), then time the first call (for "
        "process modes: starting the children) and the second.",
        "",
        *_first_call_table(results),
        "",
        "## 9. Idle process: do the threads a library started end?",
        "",
        "A fresh program makes three limited calls that return and one that expires (a "
        "busy loop limited to 50 ms), then does nothing: `threading.active_count()` is "
        f"polled until it is back to its value before the first call, {settings['idle_wait']:g} "
        "s at most. Reported, not failed on.",
        "",
        *_idle_table(results),
        "",
    ]


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
        *_machine_section(results),
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
        *_micro_table(results, "call", ("bare", "ping-pong", "ours-thread")),
        "",
        "### The same, with the process pinned to one CPU",
        "",
        "A hand-off to another thread costs two wake-ups; across CPUs of a virtual machine "
        "each can cost tens of µs, and which CPU a thread wakes on changes from run to run. "
        "Pinned to one CPU, the thread-based rows lose that noise.",
        "",
        *_micro_table(results, "call-1cpu", ("bare", "ping-pong", "ours-thread")),
        "",
        "### Thread hand-off per call against the floor, pinned and unpinned",
        "",
        "The two tables above side by side for the calls handed to another thread. The "
        "floor is a raw ping-pong: two locks passed back and forth between two threads, "
        "nothing else; each ratio is to the floor measured in the same run and the same "
        "setting. Pinned: the measuring process (each pyperf worker) pins itself to one CPU "
        "with `os.sched_setaffinity` before the subject starts a thread.",
        "",
        *_handoff_table(results),
        "",
        "## 2. Scope overhead: an empty block, 10 s limit",
        "",
        f"{pyperf_note}; ratios are of medians.",
        "",
        *_micro_table(results, "scope", ("bare-with", "ours-deadline")),
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
        f"{_default_grace(results)}Median of "
        f"{settings['blocked_trials']} trial(s), each library with its defaults; the work "
        "is looked at 50 ms after the caller has control.",
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
        *_round_two_sections(results),
    ]
    return "\n".join(out)
