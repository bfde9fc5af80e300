"""Stop C code that never returns to the interpreter, with ``isolation="process"``.

Nothing inside a process can stop a C call that never comes back to Python: an
asynchronous exception waits for the next bytecode, and a signal handler for the
C call to return. ``sum(range(10**12))`` is a C loop that holds the GIL and checks
for nothing for hours; libc's ``pause()`` waits for a signal that never comes.
Run in a child process, both are stopped at the deadline: the caller gets
``TimeoutExpired`` (``stopped=True``) and the child, with anything it started,
is gone.

Run it with ``python examples/stop_c_hang.py``. The ``if __name__ == "__main__"``
guard matters: each child process imports this file again.
"""

from __future__ import annotations

import ctypes
import os
import time

from watchdog_timeout import TimeoutExpired, timeout


@timeout(1.0, isolation="process")
def crunch() -> int:
    """Hours of C code that holds the GIL: no thread, signal or exception gets in."""
    return sum(range(10**12))


@timeout(1.0, isolation="process")
def wait_for_a_signal() -> int:
    """A libc call that blocks until a signal arrives, which never happens."""
    return int(ctypes.CDLL(None).pause())


@timeout(1.0, isolation="process")
def child_pid() -> int:
    return os.getpid()


def main() -> None:
    print(f"this process: {os.getpid()}, a warm child: {child_pid()}")
    for function in (crunch, wait_for_a_signal):
        start = time.monotonic()
        try:
            function()
        except TimeoutExpired as exc:
            took = time.monotonic() - start
            print(f"{exc.name}: stopped={exc.stopped} after {took:.2f} s ({exc})")
    print(f"a fresh child: {child_pid()}")


if __name__ == "__main__":
    main()
