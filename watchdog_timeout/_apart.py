"""Work that an exception from elsewhere must not cut short: run in a thread of its own.

Design notes
------------
Things that don't work:

- Importing what the library needs lazily (``ctypes``, ``dis``) in the thread that
  first uses it: a Ctrl-C (the main thread) or another library's ``async_raise``
  landing in importlib's own code can leave a half-run module in ``sys.modules``,
  and every later import returns it (seen in SIGINT storms at the first deadline of
  a 3.9 process: ``dis`` without ``get_instructions``, a ``ctypes`` half-run, and the
  library then broken for good).
- Importing them on the monitor: the monitor holds its lock (see ``_monitor``).

Solution: ``run_apart`` runs the work in a short-lived daemon thread, which no signal
handler and no other library's interrupt reaches, and waits for it. An exception
that lands in the waiting thread interrupts only the wait: the work completes, and
the next caller finds it done or runs it again (it is idempotent).
"""

from __future__ import annotations

import threading
from typing import Callable

__all__ = ("run_apart",)


def run_apart(work: Callable[[], None]) -> None:
    """Run ``work`` in a thread of its own and wait for it."""
    thread = threading.Thread(target=work, name="watchdog_timeout-apart", daemon=True)
    thread.start()
    thread.join()
