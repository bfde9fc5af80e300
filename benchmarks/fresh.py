"""Measures of a fresh program: the import, the first call, a process left idle.

Run by ``compare.py``:

    python benchmarks/fresh.py import --module watchdog_timeout --runs 21
    python benchmarks/fresh.py first-call --subject ours-process
    python benchmarks/fresh.py idle --subject ours-thread --wait 10

``import`` starts interpreters of its own: ``--runs`` times ``python -X importtime
-c "import <module>"`` (the module's cumulative import time, as CPython reports it)
and ``--runs`` times ``python -c "import <module>"`` (the wall-clock time of the
whole interpreter, start to exit), after one untimed run that writes the bytecode
caches; ``--module -`` is the bare interpreter (``-c pass``). ``first-call`` and
``idle`` are one trial each, in this process, which is the fresh program:
``compare.py`` starts one per trial. Each prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[1:1] = [str(ROOT)]  # measure the checkout this script belongs to

import targets  # noqa: E402
from subjects import SUBJECTS, is_timeout  # noqa: E402

Result = dict[str, Any]

#: Modules a light import should not pull in, reported for each module imported.
HEAVY = (
    "asyncio",
    "multiprocessing",
    "concurrent.futures",
    "inspect",
    "ctypes",
    "subprocess",
    "wrapt",
)
#: A limit that is never reached.
NEVER = 10.0
#: The limit of the call that expires before a process is left idle.
EXPIRING = 0.05

_IMPORTTIME = re.compile(r"^import time:\s*(\d+)\s*\|\s*(\d+)\s*\|(\s*)(\S+)\s*$")


# --- the import -----------------------------------------------------------------------


def _interpreter(code: str, *options: str) -> tuple[float, str]:
    """Seconds from start to exit of a new interpreter running ``code``, and its stderr."""
    start = time.perf_counter()
    process = subprocess.run(
        [sys.executable, *options, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,  # "-c" puts the current folder first on sys.path: this checkout
        timeout=60,
    )
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        lines = process.stderr.strip().splitlines() or [f"exit code {process.returncode}"]
        raise RuntimeError(lines[-1])
    return elapsed, process.stderr


def _parse_importtime(stderr: str, module: str) -> tuple[float, set[str]]:
    """Seconds of ``module``'s cumulative import, and every module imported after start-up.

    Modules imported at start-up (``site``) come before the ``-c`` code runs and
    are not counted; the module's own line is the one not indented.
    """
    cumulative = 0.0
    names = set()
    for line in stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match is None:
            continue
        names.add(match.group(4))
        if match.group(4) == module and len(match.group(3)) <= 1:  # "| name": top level
            cumulative = int(match.group(2)) / 1e6
    return cumulative, names


def import_cost(module: str, runs: int, warm_up: bool = True) -> Result:
    """Cumulative import time (``-X importtime``) and interpreter wall time, medians."""
    code = "pass" if module == "-" else f"import {module}"
    if warm_up:
        _interpreter(code)  # write the bytecode caches: not a fresh program's cost
    cumulatives: list[float] = []
    walls: list[float] = []
    imported: set[str] = set()
    for _ in range(runs):
        if module != "-":
            _, stderr = _interpreter(code, "-X", "importtime")
            cumulative, imported = _parse_importtime(stderr, module)
            cumulatives.append(cumulative)
        walls.append(_interpreter(code)[0])
    return {
        "runs": runs,
        "cumulative": statistics.median(cumulatives) if cumulatives else 0.0,
        "cumulative_min": min(cumulatives) if cumulatives else 0.0,
        "cumulative_max": max(cumulatives) if cumulatives else 0.0,
        "wall": statistics.median(walls),
        "modules": len(imported),
        "heavy": [name for name in HEAVY if name in imported],
    }


# --- the first call ---------------------------------------------------------------------


def first_call(key: str) -> Result:
    """Seconds to import and decorate, then of the first and second limited calls."""
    subject = SUBJECTS[key]
    assert subject.limiter is not None
    start = time.perf_counter()
    limited = subject.limiter(NEVER, targets.noop)  # imports the library
    decorated = time.perf_counter()
    limited()
    first = time.perf_counter()
    limited()
    second = time.perf_counter()
    return {"setup": decorated - start, "first": first - decorated, "second": second - first}


# --- idle ---------------------------------------------------------------------------


def idle(key: str, wait: float) -> Result:
    """Whether the threads a subject started end once it is left idle, and when.

    Three calls that return, one that expires, then nothing: ``threading.active_count()``
    is polled until it is back to its value before the first call, ``wait`` s at most.
    """
    subject = SUBJECTS[key]
    assert subject.limiter is not None
    before = threading.active_count()
    returning = subject.limiter(NEVER, targets.noop)
    expiring = subject.limiter(EXPIRING, targets.busy)
    for _ in range(3):
        returning()
    try:
        expiring()
    except BaseException as exc:
        if not is_timeout(exc):
            raise
    used = threading.active_count()
    start = time.perf_counter()
    while threading.active_count() > before and time.perf_counter() - start < wait:
        time.sleep(0.02)
    waited = time.perf_counter() - start
    back = threading.active_count() <= before
    return {
        "before": before,
        "after_use": used,
        "after_wait": threading.active_count(),
        "back": back,
        "seconds": waited if back else None,
        "wait": wait,
        "left": sorted(t.name for t in threading.enumerate() if t is not threading.main_thread()),
    }


# --- command line ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measure", choices=("import", "first-call", "idle"))
    parser.add_argument("--module", help="the module to import; - for none")
    parser.add_argument("--runs", type=int, default=11, help="interpreters of each kind")
    parser.add_argument(
        "--no-warm-up", action="store_true", help="no untimed import first (a smoke run)"
    )
    parser.add_argument("--subject", choices=sorted(SUBJECTS))
    parser.add_argument("--wait", type=float, default=10.0, help="seconds idle at most")
    args = parser.parse_args(argv)
    if args.measure == "import":
        if args.module is None:
            parser.error("import needs --module")
        result = import_cost(args.module, args.runs, warm_up=not args.no_warm_up)
    elif args.subject is None:
        parser.error(f"{args.measure} needs --subject")
    elif args.measure == "first-call":
        result = first_call(args.subject)
    else:
        result = idle(args.subject, args.wait)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
