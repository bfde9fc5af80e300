"""The chart of the results of ``compare.py``: a PNG, drawn with matplotlib."""

# ruff: noqa: RUF001 (the multiplication sign marks ratios)

from __future__ import annotations

from pathlib import Path
from typing import Any

from report import HANDOFF, Results, Row, _label, _ok, _rows, machine_line
from subjects import SUBJECTS

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


def _handoff(axis: Any, results: Results) -> None:
    """Grouped bars: each thread hand-off as a multiple of the ping-pong, pinned and not."""
    from matplotlib import ticker  # noqa: PLC0415 (optional: only to draw)

    settings = (("call-1cpu", "pinned to one CPU", "#264653"), ("call", "unpinned", "#e9c46a"))
    keys = [
        key
        for key in HANDOFF
        if any(_ok(_rows(results, measure).get(key)) for measure, _, _ in settings)
    ]
    height = 0.4
    for offset, (measure, name, colour) in enumerate(settings):
        rows = _rows(results, measure)
        floor = rows.get("ping-pong")
        if not _ok(floor) or floor is None:
            continue
        ratios = [
            row["median"] / floor["median"] if _ok(row := rows.get(key)) and row else 0.0
            for key in keys
        ]
        places = [index + (offset - 0.5) * height for index in range(len(keys))]
        axis.barh(places, ratios, height=height, color=colour, label=name)
        for place, ratio in zip(places, ratios):
            if ratio:
                axis.text(ratio, place, f" {ratio:.2g}×", va="center", fontsize=7)
    axis.set_yticks(range(len(keys)), [_label(key) for key in keys], fontsize=8)
    axis.axvline(2.0, color="black", linestyle=":", linewidth=1)
    axis.set_xscale("log")
    axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}×"))
    axis.xaxis.set_minor_formatter(ticker.NullFormatter())
    axis.set_title("Thread hand-off per call, × the two-lock ping-pong (goal: 2×)", fontsize=10)
    axis.legend(fontsize=7)


def _imports(axis: Any, results: Results) -> None:
    rows = [
        (module, row)
        for module, row in _rows(results, "import").items()
        if module != "-" and _ok(row)
    ]
    rows.sort(key=lambda item: item[1]["cumulative"])
    values = [row["cumulative"] * 1e3 for _, row in rows]
    kinds = {"watchdog_timeout": "ours", "asyncio": "reference"}
    colours = [_COLOURS[kinds.get(module, "peer")] for module, _ in rows]
    axis.barh([module for module, _ in rows], values, color=colours)
    for index, number in enumerate(values):
        axis.text(number, index, f" {number:.3g}", va="center", fontsize=7)
    axis.tick_params(axis="y", labelsize=8)
    axis.set_title("import, ms (-X importtime, cumulative, median)", fontsize=10)


def chart(results: Results, path: Path) -> None:
    """A 3 by 2 PNG: per-call cost, scope cost, overshoot, throughput, hand-off, import."""
    import matplotlib  # noqa: PLC0415 (optional: only to draw)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(3, 2, figsize=(14, 15))
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
    _handoff(axes[2][0], results)
    _imports(axes[2][1], results)
    figure.suptitle("watchdog-timeout vs peers: " + machine_line(results["meta"]), fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
