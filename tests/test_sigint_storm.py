"""A storm of real SIGINTs over deadlines and shields (issue 9, item 9).

A child process (this file, run as a script) runs ``with deadline(): with
shield(): ...`` and ``with deadline(): <busy>`` blocks (or, in the "deadlines"
variant, only the latter), all written in one loop of one frame as a user would,
for a few seconds while one of its threads sends it SIGINT every 50-500 us, with
short lulls in which deadlines can fire (the child switches threads every 50 us so
that the sender keeps that pace). The SIGINT handler raises KeyboardInterrupt
only while that loop runs, not in the harness's bookkeeping. KeyboardInterrupt and
TimeoutExpired may come out of a block; nothing else may (``_Interrupt``, a
``RuntimeError`` of a scope's bookkeeping). After the storm the process must still
work: ``deadline()`` does not block (3.9 left the monitor's lock held), a fresh
deadline fires, a shield holds it back until it ends, and the process exits by
itself. The child prints a JSON summary; the storm stays out of the pytest process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from typing import Any

import pytest
from helpers import spin

from watchdog_timeout import TimeoutExpired, deadline, shield

#: How long the storm lasts, and the interval between two SIGINTs, in seconds.
STORM = float(os.environ.get("WATCHDOG_STORM_SECONDS", "3.0"))
INTERVAL = (50e-6, 500e-6)
#: After a SIGINT, the chance of a lull, and how long it lasts (seconds).
PAUSE_CHANCE = 0.02
PAUSE = (0.01, 0.08)
#: The child's switch interval, in seconds, so that the sender keeps that pace.
SWITCH = 50e-6
#: The checks after the storm, in the summary ("" when passed).
CHECKS = ("deadline blocks", "fresh deadline", "shield")
#: Where a check after the storm gives up (it would block forever).
STUCK = 5.0


class Storm:
    """The child's side: the loop under the storm, and the checks after it."""

    def __init__(self, shields: bool = True) -> None:
        self.shields = shields
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}
        self.sent = 0
        self.iterations = 0
        self.going = False
        self.stopping = False
        #: Whether a SIGINT raises KeyboardInterrupt now (see ``on_sigint``).
        self.armed = False
        self.began = 0.0
        self.first_miss: float | None = None
        self.sender = threading.Thread(target=self.send, name="storm", daemon=True)

    def record(self, exc: BaseException, where: str = "") -> None:
        name = where + type(exc).__qualname__
        self.counts[name] += 1
        if not isinstance(exc, (KeyboardInterrupt, TimeoutExpired)):
            found = self.examples.setdefault(name, [])
            if len(found) < 3:
                lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
                found.append("".join(lines)[-3000:])

    def on_sigint(self, signum: int, frame: object) -> None:
        """The SIGINT handler: KeyboardInterrupt, but only while the blocks' loop runs.

        As Python's own handler does, but the harness's bookkeeping (recording
        what came out, the checks after the storm) is not what is under test: a
        KeyboardInterrupt that landed there would end the child (one run in ten
        on a loaded machine). The flag is lowered first thing in each handler.
        """
        if self.armed:
            raise KeyboardInterrupt

    def send(self) -> None:
        """The storm: SIGINT to this process at random short intervals."""
        pid = os.getpid()
        while not self.going:
            time.sleep(0.001)
        while not self.stopping:
            time.sleep(random.uniform(*INTERVAL))
            os.kill(pid, signal.SIGINT)
            self.sent += 1
            if random.random() < PAUSE_CHANCE:  # a lull: time for deadlines to fire
                time.sleep(random.uniform(*PAUSE))

    def loop(self, end: float) -> None:
        # The blocks are written in this one frame, as a user's loop would be: a
        # scope whose exit was cut short must not deliver into the next block
        # entered at the same ``with``.
        while time.monotonic() < end:
            self.armed = True
            self.iterations += 1
            i = self.iterations
            seconds = random.uniform(0.01, 0.05)
            try:
                if i % 2 and self.shields:
                    with deadline(seconds):
                        with shield():
                            sum(range(random.randrange(1, 2000)))
                elif i % 10:
                    with deadline(seconds):
                        spin(random.uniform(0, 0.002))
                else:
                    with deadline(seconds):
                        spin(0.1)  # until it fires
                    if self.first_miss is None:
                        self.first_miss = time.monotonic() - self.began
                    self.counts["deadline did not fire"] += 1
            except (KeyboardInterrupt, TimeoutExpired) as exc:
                self.armed = False
                self.record(exc)
            except BaseException as exc:  # what must never come out
                self.armed = False
                self.record(exc)
            self.armed = False

    @staticmethod
    def warm_up() -> None:
        """Before the storm: the library's first use, with what it loads then (ctypes).

        The storm is about our enter/exit code, not about CPython's import system: a
        KeyboardInterrupt landing in importlib's own cleanup of an import that
        another one cut short leaves the half-run module in ``sys.modules`` (seen
        on 3.9: ``module 'ctypes' has no attribute 'c_int'`` from then on).
        """
        with deadline(1.0), shield(), deadline(1.0):
            pass
        try:
            with deadline(0.01):
                spin(1.0)
        except TimeoutExpired:
            pass

    def storm(self) -> None:
        """Run blocks under the storm for STORM seconds."""
        self.warm_up()
        self.began = time.monotonic()
        end = self.began + STORM
        self.sender.start()
        self.going = True
        while time.monotonic() < end:
            try:
                self.loop(end)
            except BaseException as exc:  # landed in the loop's own code
                self.armed = False
                self.record(exc, "loop: ")

    def drain(self) -> None:
        """Stop the sender; let the SIGINTs already sent land (at the next check points)."""
        for _ in range(100):
            try:
                self.stopping = True
                self.sender.join(0.01)
                time.sleep(0.01)
                if not self.sender.is_alive():
                    time.sleep(0.05)
                    return
            except KeyboardInterrupt:
                pass

    def summary(self) -> dict[str, Any]:
        """What came out of the blocks, by class; the private ones apart."""
        return {
            "sigints": self.sent,
            "iterations": self.iterations,
            "counts": dict(self.counts),
            "first deadline that did not fire (s into the storm)": self.first_miss,
            "escaped": {
                name: count
                for name, count in self.counts.items()
                if not name.endswith(("KeyboardInterrupt", "TimeoutExpired", "did not fire"))
            },
            "examples": self.examples,
        }


def _blocks(action: Any) -> bool:
    """Whether ``action`` is still running after STUCK seconds (in a daemon thread)."""
    thread = threading.Thread(target=action, name="probe", daemon=True)
    thread.start()
    thread.join(STUCK)
    return thread.is_alive()


def after_the_storm() -> dict[str, Any]:
    """The checks after the storm, each reported as a string (empty: passed)."""
    results: dict[str, Any] = {}

    def enter_and_exit() -> None:
        with deadline(1.0):
            pass

    if _blocks(enter_and_exit):
        results["deadline blocks"] = "deadline() in a new thread blocked: a lock is left held"
        return results
    results["deadline blocks"] = ""

    start = time.monotonic()
    try:
        with deadline(0.1):
            spin(STUCK)
    except TimeoutExpired:
        took = time.monotonic() - start
        results["fresh deadline"] = "" if took < 2.0 else f"fired after {took:.3f} s"
    except BaseException as exc:
        results["fresh deadline"] = f"raised {type(exc).__qualname__}: {exc}"
    else:
        results["fresh deadline"] = f"deadline(0.1) did not fire in {STUCK} s"

    start = time.monotonic()
    try:
        with deadline(0.05):
            with shield():
                spin(0.2)
            spin(STUCK)
    except TimeoutExpired:
        took = time.monotonic() - start
        if took < 0.19:
            results["shield"] = f"the deadline fired inside the shield, at {took:.3f} s"
        else:
            results["shield"] = "" if took < 1.2 else f"delivered {took - 0.2:.3f} s after it"
    except BaseException as exc:
        results["shield"] = f"raised {type(exc).__qualname__}: {exc}"
    else:
        results["shield"] = f"deadline(0.05) around a shield did not fire in {STUCK} s"
    return results


def child_main(argv: list[str]) -> int:
    """``python test_sigint_storm.py shields|deadlines``."""
    # The sender needs the GIL for each SIGINT: without this it would wait 5 ms.
    sys.setswitchinterval(SWITCH)
    storm = Storm(shields=argv[0] == "shields")
    # (A background job starts with SIGINT ignored: this handler replaces that.)
    signal.signal(signal.SIGINT, storm.on_sigint)
    try:
        try:
            storm.storm()
        except BaseException as exc:  # landed in the harness: count it, go on
            storm.armed = False
            storm.record(exc, "harness: ")
    finally:
        storm.stopping = True
    storm.drain()
    summary = storm.summary()
    summary.update(after_the_storm())
    print(json.dumps(summary), flush=True)
    return 0


# --- the test (in the parent) ---------------------------------------------------------


def run_storm(blocks: str, python: str = sys.executable) -> dict[str, Any]:
    """Run the storm over ``blocks`` in a child of ``python``; its summary, or why none."""
    try:
        child = subprocess.run(
            [python, __file__, blocks],
            capture_output=True,
            text=True,
            timeout=STORM + 60,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return {"exit": f"still running after {exc.timeout} s", "stderr": str(exc.stderr)}
    lines = child.stdout.strip().splitlines()
    summary: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    summary["exit"] = "" if child.returncode == 0 else f"exit code {child.returncode}"
    summary["stderr"] = child.stderr[-3000:]
    return summary


@pytest.mark.timeout(STORM + 120)
@pytest.mark.parametrize("blocks", ["shields", "deadlines"])
def test_sigint_storm_lets_nothing_private_out_and_leaves_the_process_working(
    blocks: str,
) -> None:
    summary = run_storm(blocks)
    counts = summary.get("counts", {})
    problems = [
        f"the child: {summary['exit']}" if summary["exit"] else "",
        "no storm (under 100 KeyboardInterrupts)"
        if counts.get("KeyboardInterrupt", 0) <= 100
        else "",
        f"escaped: {summary.get('escaped')}" if summary.get("escaped") != {} else "",
        "no deadline fired during the storm" if not counts.get("TimeoutExpired") else "",
        *(f"{check}: {summary.get(check)}" for check in CHECKS if summary.get(check) != ""),
    ]
    problems = [problem for problem in problems if problem]
    if problems:
        pytest.fail("\n".join([*problems, json.dumps(summary, indent=1)]), pytrace=False)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
