"""The functions the benchmarks limit, at module level so that child processes find them.

Process-based subjects (ours, pebble, timeout-decorator, wrapt-timeout-decorator)
send these functions to a child by reference (module and name) or fork; children
started by ``spawn`` or ``forkserver`` import this module, so it stays light: the
standard library only.
"""

from __future__ import annotations

import os
import threading
import time

#: Set to True to end every ``spin()`` loop.
stop_spinning = [False]


def noop() -> None:
    """Do nothing: the call whose overhead is measured."""


async def trivial() -> None:
    """Do nothing, asynchronously."""


def busy(cap: float = 5.0) -> int:
    """Pure-Python work until interrupted, or for ``cap`` seconds at most (a safety net)."""
    end = time.monotonic() + cap
    count = 0
    # A loop inside a called function, with a call in its condition: an interrupt
    # lands where any handler sees it on every CPython (cpython#108214, #130279).
    while time.monotonic() < end:
        count += 1
    return count


def spin() -> None:
    """Compete for the GIL until ``stop_spinning[0]`` is set."""
    flag = stop_spinning
    while not flag[0]:
        pass


def blocked_in_c(marker: str, seconds: float) -> None:
    """Block in C (``time.sleep``) for ``seconds``, leaving a trace in the file ``marker``.

    The file gets ``"<pid> <thread ident>"`` before the sleep and ``" done"`` after
    it, so the caller can tell whether the work stopped, still runs, or ran to the end.
    """
    with open(marker, "w") as stream:
        stream.write(f"{os.getpid()} {threading.get_ident()}")
    time.sleep(seconds)
    with open(marker, "a") as stream:
        stream.write(" done")
