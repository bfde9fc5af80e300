"""watchdog-timeout: a hard time limit on any Python code.

- ``@timeout(seconds)``: limit every call of a function (in a worker thread, in
  the caller's thread, or in a child process).
- ``deadline(seconds)``: a ``with`` block that interrupts the current thread.
- ``remaining()``: seconds left before the innermost deadline, for native timeouts.
- ``Watchdog(seconds)``: interrupt (or report) a loop that stops calling ``kick()``.
- ``shield()``: hold interrupts back during a critical section.
- ``StoppableThread``: a thread with a cooperative ``stop()`` and a forced ``kill()``.
- ``TimeoutExpired``: what a time limit that ran out raises.
- ``async_raise`` and ``stop_thread``: raise an exception inside another thread.
"""

from ._async_raise import ThreadOrIdent
from ._deadline import deadline, deadline_at, remaining
from ._decorator import SecondsOrFunction, timeout
from ._errors import ProcessCrashed, TimeoutExpired
from ._scope import Deadline
from ._seconds import Seconds
from ._sender import async_raise
from ._shield import Shield, shield
from ._threads import StoppableThread, stop_thread
from ._watchdog import Watchdog
from ._worker import abandoned_workers

__version__ = "0.1.0"

__all__ = (
    "Deadline",
    "ProcessCrashed",
    "Seconds",
    "SecondsOrFunction",
    "Shield",
    "StoppableThread",
    "ThreadOrIdent",
    "TimeoutExpired",
    "Watchdog",
    "abandoned_workers",
    "async_raise",
    "deadline",
    "deadline_at",
    "remaining",
    "shield",
    "stop_thread",
    "timeout",
)
