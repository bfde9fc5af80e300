"""watchdog-timeout: a hard time limit on any Python code.

- ``@timeout(seconds)``: limit every call of a function (in a worker thread, in
  the caller's thread, or in a child process).
- ``deadline(seconds)``: a ``with`` block that interrupts the current thread.
- ``remaining()``: seconds left before the innermost deadline, for native timeouts.
- ``TimeoutExpired``: what a time limit that ran out raises.
- ``async_raise`` and ``stop_thread``: raise an exception inside another thread.
"""

from ._async_raise import ThreadOrIdent, async_raise
from ._decorator import SecondsOrFunction, timeout
from ._errors import ProcessCrashed, TimeoutExpired
from ._scope import Deadline, deadline, remaining
from ._seconds import Seconds
from ._threads import stop_thread
from ._worker import abandoned_workers

__version__ = "0.1.0"

__all__ = (
    "Deadline",
    "ProcessCrashed",
    "Seconds",
    "SecondsOrFunction",
    "ThreadOrIdent",
    "TimeoutExpired",
    "abandoned_workers",
    "async_raise",
    "deadline",
    "remaining",
    "stop_thread",
    "timeout",
)
