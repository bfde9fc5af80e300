"""Plain-timing measures, each run by ``compare.py`` in a fresh process per subject.

    python benchmarks/measures.py precision --subject ours-thread --trials 200 --loads 0,1,4
    python benchmarks/measures.py blocked --subject func-timeout --trials 3 --sleep 5
    python benchmarks/measures.py concurrency --subject ours-thread --duration 2
    python benchmarks/measures.py scopes --subject ours-deadline --rounds 5

A fresh process per subject: an abandoned thread, a pool or a signal handler left
by one subject never weighs on the next. Prints one JSON object on stdout.

Why not pyperf here: these are distributions of single events (an expiry, a
wake-up) or whole-process counts (threads, allocated bytes), not a mean cost per
loop; pyperf's loops and worker processes would average away what they measure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path[1:1] = [str(HERE.parent)]  # measure the checkout this script belongs to

import targets  # noqa: E402
from subjects import SUBJECTS, Subject, is_timeout  # noqa: E402

Result = dict[str, Any]

#: The limit in the precision measure, and the busy loop it interrupts.
PRECISION_LIMIT = 0.05
#: The limit in the blocked-in-C measure.
BLOCKED_LIMIT = 0.1
#: A limit that is never reached (concurrency, scopes).
NEVER = 10.0


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")[:160]


def _percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else []
    only = values[0]
    return {
        "p50": statistics.median(values),
        "p90": cuts[89] if cuts else only,
        "p99": cuts[98] if cuts else only,
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def _warm_up(subject: Subject, seconds: float, settle: float) -> None:
    """Start what the subject starts once (threads, pools, a forkserver), untimed."""
    assert subject.limiter is not None
    try:
        subject.limiter(seconds, targets.noop)()
    except BaseException as exc:
        # A new process per call can take longer than the limit to start on a loaded
        # machine: the warm-up has started what it had to start all the same.
        if not is_timeout(exc):
            raise
    time.sleep(settle)


# --- 3. expiry precision ---------------------------------------------------------------


def precision(subject: Subject, trials: int, load: int, budget: float, settle: float) -> Result:
    """Overshoot past a 50 ms limit on a pure-Python busy loop, with ``load`` busy threads."""
    assert subject.limiter is not None
    limited = subject.limiter(PRECISION_LIMIT, targets.busy)
    targets.stop_spinning[0] = False
    hogs = [threading.Thread(target=targets.spin, daemon=True) for _ in range(load)]
    for hog in hogs:
        hog.start()
    overshoots: list[float] = []
    give_up = time.monotonic() + budget
    failure = None
    try:
        for _ in range(trials):
            start = time.perf_counter()
            try:
                limited()
            except BaseException as exc:
                if not is_timeout(exc):
                    failure = f"failed: {_describe(exc)}"
                    break
            else:
                failure = "failed: the busy loop was not interrupted"
                break
            overshoots.append(time.perf_counter() - start - PRECISION_LIMIT)
            if time.monotonic() > give_up:
                break
            time.sleep(settle)  # let the subject settle between trials
    finally:
        targets.stop_spinning[0] = True
        for hog in hogs:
            hog.join()
    result: Result = {"trials": len(overshoots), "load": load}
    if failure is not None:
        result["status"] = failure
    if overshoots:
        result.update({k: v * 1000 for k, v in _percentiles(overshoots).items()})
    return result


# --- 4. blocked in C ---------------------------------------------------------------


def _work_status(marker: Path) -> str:
    """ "stopped", "running" or "finished", from the trace ``blocked_in_c`` left."""
    try:
        pid_text, ident_text, *rest = marker.read_text().split()
    except (OSError, ValueError):
        return "never started"
    if rest:
        return "finished"
    pid, ident = int(pid_text), int(ident_text)
    if pid != os.getpid():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return "stopped"
        return "stopped" if state in ("Z", "X") else "running"
    if ident == threading.get_ident():
        return "stopped"  # it ran in this thread, which is back here without " done"
    alive = {thread.ident for thread in threading.enumerate()}
    return "running" if ident in alive else "stopped"


def blocked(subject: Subject, trials: int, sleep: float) -> Result:
    """Seconds until the caller has control back from ``time.sleep`` limited to 0.1 s."""
    assert subject.limiter is not None
    limited = subject.limiter(BLOCKED_LIMIT, targets.blocked_in_c)
    _warm_up(subject, BLOCKED_LIMIT, 0.05)
    controls: list[float] = []
    works: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        for trial in range(trials):
            marker = Path(folder) / f"trial-{trial}"
            start = time.perf_counter()
            try:
                limited(str(marker), sleep)
            except BaseException as exc:
                if not is_timeout(exc):
                    return {"status": f"failed: {_describe(exc)}"}
            control = time.perf_counter() - start
            controls.append(control)
            time.sleep(0.05)  # time for a kill or an interrupt to take effect
            # Interrupted only once the sleep returned: it was not stopped, it ended.
            works.append("finished" if control >= sleep else _work_status(marker))
    result: Result = {
        "trials": trials,
        "sleep": sleep,
        "control": statistics.median(controls),
        "control_max": max(controls),
        "work": max(set(works), key=works.count),
    }
    if subject.kind == "ours":
        result["default_grace"] = _default_grace()
    return result


def _default_grace() -> str:
    """The default of ``timeout()``'s ``grace``, as the public signature states it."""
    import inspect  # noqa: PLC0415 (only here)

    from watchdog_timeout import timeout  # noqa: PLC0415 (imported by the subject already)

    grace = inspect.signature(timeout).parameters.get("grace")
    return "no grace parameter" if grace is None else repr(grace.default)


# --- 5. concurrency -----------------------------------------------------------------


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))  # OS threads, whoever made them
    except OSError:
        return threading.active_count()


def concurrency(subject: Subject, counts: list[int], duration: float) -> Result:
    """Calls/s of N threads calling a limited no-op, and the peak of extra threads."""
    assert subject.limiter is not None
    base = _thread_count()
    limited = subject.limiter(NEVER, targets.noop)
    limited()  # warm up (the monitor, the first worker)
    phases = []
    for count in counts:
        stop = [False]
        calls = [0] * count
        barrier = threading.Barrier(count + 1)
        errors: list[str] = []

        def caller(
            index: int,
            stop: list[bool] = stop,
            calls: list[int] = calls,
            barrier: threading.Barrier = barrier,
            errors: list[str] = errors,
        ) -> None:
            barrier.wait()
            done = 0
            try:
                while not stop[0]:
                    limited()
                    done += 1
            except BaseException as exc:
                errors.append(_describe(exc))
            calls[index] = done

        callers = [threading.Thread(target=caller, args=(i,)) for i in range(count)]
        for thread in callers:
            thread.start()
        barrier.wait()
        start = time.perf_counter()
        peak = 0
        while time.perf_counter() - start < duration:
            peak = max(peak, _thread_count())
            time.sleep(0.001)
        stop[0] = True
        for thread in callers:
            thread.join()
        elapsed = time.perf_counter() - start
        phase: Result = {
            "threads": count,
            "calls_per_s": sum(calls) / elapsed,
            "extra_threads": max(0, peak - base - count),
        }
        if errors:
            phase["status"] = f"failed: {errors[0]}"
        phases.append(phase)
    return {"phases": phases, "duration": duration}


# --- 6. many armed scopes -------------------------------------------------------------


def _drive(awaitable: Any) -> Any:
    """Run a coroutine that never suspends (asyncio.timeout's enter and exit) to its end."""
    try:
        awaitable.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("the scope suspended")


class _Armer:
    """Enters and exits scopes by hand: sync ones, or async ones inside a running loop.

    A sync scope is entered right in the measuring loop, never through a helper:
    ``deadline()`` keeps a reference to the frame that enters it, and one frame per
    scope would be counted as the scope's memory.
    """

    def __init__(self, make: Callable[[float], Any], is_async: bool) -> None:
        self.make = make
        self.is_async = is_async

    def arm(self, scopes: list[Any]) -> float:
        start = time.perf_counter()
        if self.is_async:
            for scope in scopes:
                _drive(scope.__aenter__())
        else:
            for scope in scopes:
                scope.__enter__()
        return time.perf_counter() - start

    def disarm(self, scopes: list[Any]) -> None:
        for scope in reversed(scopes):
            if self.is_async:
                _drive(scope.__aexit__(None, None, None))
            else:
                scope.__exit__(None, None, None)

    def one_more(self, trials: int) -> float:
        """Median seconds to arm one more scope on top of those armed."""
        times = []
        for _ in range(trials):
            scope = self.make(NEVER)
            if self.is_async:
                start = time.perf_counter()
                _drive(scope.__aenter__())
                times.append(time.perf_counter() - start)
                _drive(scope.__aexit__(None, None, None))
            else:
                start = time.perf_counter()
                scope.__enter__()
                times.append(time.perf_counter() - start)
                scope.__exit__(None, None, None)
        return statistics.median(times)


def _scopes_at(armer: _Armer, size: int, rounds: int) -> Result:
    arm_times, marginals = [], []
    for _ in range(rounds):
        scopes = [armer.make(NEVER) for _ in range(size)]
        arm_times.append(armer.arm(scopes) / size)
        marginals.append(armer.one_more(200))
        armer.disarm(scopes)
        del scopes
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        scopes = [armer.make(NEVER) for _ in range(size)]
        armer.arm(scopes)
        after = tracemalloc.get_traced_memory()[0]
        armer.disarm(scopes)
    finally:
        tracemalloc.stop()
    return {
        "scopes": size,
        "arm_us": statistics.median(arm_times) * 1e6,
        "one_more_us": statistics.median(marginals) * 1e6,
        "bytes": (after - before) / size,
    }


def scopes(subject: Subject, sizes: list[int], rounds: int, max_threads: int) -> Result:
    """µs to arm each of N nested scopes, and bytes per armed scope (tracemalloc).

    Bytes count what exists while the scopes are armed: the scope objects, their
    entries in the timer heap or the timer threads' Python objects (not their stacks).
    """
    make = subject.async_scope or subject.scope
    assert make is not None
    armer = _Armer(make, is_async=subject.async_scope is not None)

    def measure() -> Result:
        levels: list[Result] = []
        for size in sizes:
            if subject.key == "stopit-thread" and size > max_threads:
                levels.append({"scopes": size, "status": "skipped: a thread per scope"})
            else:
                levels.append(_scopes_at(armer, size, rounds))
        return {"levels": levels}

    if armer.is_async:

        async def in_loop() -> Result:
            return measure()

        return asyncio.run(in_loop())
    return measure()


# --- command line ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measure", choices=("precision", "blocked", "concurrency", "scopes"))
    parser.add_argument("--subject", choices=sorted(SUBJECTS), required=True)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--loaded-trials", type=int, default=100, help="trials under load")
    parser.add_argument("--loads", default="0,1,4", help="busy threads competing, each run")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per load at most")
    parser.add_argument("--settle", type=float, default=0.002, help="seconds between trials")
    parser.add_argument("--sleep", type=float, default=5.0, help="seconds blocked in C")
    parser.add_argument("--threads", default="1,10,100", help="caller threads, comma-separated")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per phase")
    parser.add_argument("--sizes", default="10,100,1000,10000", help="armed scopes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-threads", type=int, default=1000, help="for stopit's scopes")
    args = parser.parse_args(argv)
    subject = SUBJECTS[args.subject]
    result: Result
    if args.measure == "precision":
        _warm_up(subject, PRECISION_LIMIT, max(args.settle, 0.05))
        result = {
            f"load{load}": precision(
                subject, args.loaded_trials if load else args.trials, load, args.budget, args.settle
            )
            for load in (int(n) for n in args.loads.split(","))
        }
    elif args.measure == "blocked":
        result = blocked(subject, args.trials, args.sleep)
    elif args.measure == "concurrency":
        counts = [int(n) for n in args.threads.split(",")]
        result = concurrency(subject, counts, args.duration)
    else:
        sizes = [int(n) for n in args.sizes.split(",")]
        result = scopes(subject, sizes, args.rounds, args.max_threads)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
