"""Micro-benchmarks: the cost of one limited no-op call, or of one empty scope.

Run by ``compare.py``, one subject per run, so that a peer that fails fails alone:

    python benchmarks/micro.py --measure call --subject ours-thread -o out.json [pyperf options]
    python benchmarks/micro.py --plain --measure call --subject ours-thread
    python benchmarks/micro.py --pin-cpu --measure call --subject ping-pong -o out.json

With pyperf (the full run): pyperf calibrates the number of loops, runs the
benchmark in fresh worker processes (this same script with ``--worker``) and
stores every value. ``--plain`` (the quick run): this process alone times a few
batches and prints mean, standard deviation and median as JSON; no pyperf needed.

``--pin-cpu``: the measuring process (each pyperf worker, or the ``--plain``
process) pins itself to one CPU with ``os.sched_setaffinity`` before the subject
starts any thread, so that every thread it starts shares that CPU: a hand-off
between threads then costs two wake-ups on one CPU, without the cross-CPU wake-up
of a virtual machine, whose cost changes from one run to the next.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path[1:1] = [str(HERE.parent)]  # measure the checkout this script belongs to

import targets  # noqa: E402
from subjects import SUBJECTS, Subject  # noqa: E402

#: The limit of every micro-benchmarked call and scope: never reached.
LIMIT = 10.0

TimeFunc = Callable[[int], float]


def call_timer(subject: Subject) -> TimeFunc:
    """Seconds for ``loops`` limited calls of a no-op."""
    if subject.async_limiter is not None:
        limited_async = subject.async_limiter(LIMIT, targets.trivial)

        async def calls(loops: int) -> float:
            start = time.perf_counter()
            for _ in range(loops):
                await limited_async()
            return time.perf_counter() - start

        return lambda loops: asyncio.run(calls(loops))
    assert subject.limiter is not None
    limited = subject.limiter(LIMIT, targets.noop)

    def timer(loops: int) -> float:
        start = time.perf_counter()
        for _ in range(loops):
            limited()
        return time.perf_counter() - start

    return timer


def scope_timer(subject: Subject) -> TimeFunc:
    """Seconds for ``loops`` empty scopes (``with scope: pass``)."""
    if subject.async_scope is not None:
        make_async = subject.async_scope

        async def scopes(loops: int) -> float:
            start = time.perf_counter()
            for _ in range(loops):
                async with make_async(LIMIT):
                    pass
            return time.perf_counter() - start

        return lambda loops: asyncio.run(scopes(loops))
    assert subject.scope is not None
    make = subject.scope

    def timer(loops: int) -> float:
        start = time.perf_counter()
        for _ in range(loops):
            with make(LIMIT):
                pass
        return time.perf_counter() - start

    return timer


def pin_to_one_cpu() -> list[int]:
    """Pin this process to the first CPU it may run on; the CPUs it may run on now.

    Called before the subject starts a thread: threads inherit the affinity of
    the thread that starts them, so every thread of the subject shares that CPU.
    """
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    return sorted(os.sched_getaffinity(0))


def _cpus() -> list[int]:
    getaffinity = getattr(os, "sched_getaffinity", None)  # Linux only
    return sorted(getaffinity(0)) if getaffinity else []


def _pass_on(command: list[str], args: argparse.Namespace) -> None:
    # pyperf starts its workers with its own options: add ours.
    command.extend(("--measure", args.measure, "--subject", args.subject))
    if args.pin_cpu:
        command.append("--pin-cpu")


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--measure", choices=("call", "scope"), required=True)
    parser.add_argument("--subject", choices=sorted(SUBJECTS), required=True)
    parser.add_argument(
        "--pin-cpu", action="store_true", help="pin the measuring process to one CPU first"
    )


def _timer(args: argparse.Namespace) -> TimeFunc:
    subject = SUBJECTS[args.subject]
    return call_timer(subject) if args.measure == "call" else scope_timer(subject)


def plain(timer: TimeFunc, min_time: float = 0.01, values: int = 5) -> dict[str, float]:
    """Seconds per loop: ``values`` batches of at least ``min_time`` each, after a warm-up."""
    loops = 1
    while (taken := timer(loops)) < min_time:
        loops = max(loops * 2, int(loops * min_time / max(taken, 1e-9) * 1.2))
    samples = [timer(loops) / loops for _ in range(values)]
    return {
        "mean": statistics.fmean(samples),
        "stdev": statistics.stdev(samples),
        "median": statistics.median(samples),
        "values": values,
        "loops": loops,
    }


def main() -> None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plain", action="store_true")
    if pre.parse_known_args()[0].plain:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--plain", action="store_true", help="time here, without pyperf")
        _add_options(parser)
        args = parser.parse_args()
        cpus = pin_to_one_cpu() if args.pin_cpu else _cpus()
        print(json.dumps({**plain(_timer(args)), "cpus": cpus}), flush=True)
        return
    pyperf = importlib.import_module("pyperf")  # not needed with --plain; no type information
    runner: Any = pyperf.Runner(add_cmdline_args=_pass_on)
    _add_options(runner.argparser)
    args = runner.parse_args()
    if args.pin_cpu:  # pyperf pins nothing unless the machine has isolated CPUs
        pin_to_one_cpu()
    timer = _timer(args)
    if not args.worker:
        timer(2)  # fail here, with the peer's own error, rather than in a worker
    runner.bench_time_func(f"{args.measure}:{args.subject}", timer)


if __name__ == "__main__":
    main()
