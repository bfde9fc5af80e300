"""The pytest plugin's last resort: end the process when a test does not stop.

See ``_pytest_plugin`` for the design. Our thread names the test first; when C code
holds the GIL no Python thread runs, and faulthandler's own C thread ends the
process a moment later.
"""

from __future__ import annotations

import faulthandler
import os
import threading
import time

__all__ = ("LastResort",)

#: The library's clock (only its public API is used by the plugin).
clock = time.monotonic


class LastResort:
    """Dump every thread's stack and exit when a phase has not ended in time.

    A thread of ours does it when it can: it names the test first. When C code
    holds the GIL, no Python thread runs, and faulthandler's watchdog (a C thread)
    does it a moment later, the test named by a frame of ours in its dump.

    Cheap to arm and disarm, as it happens several times per test: our thread is
    woken only for an earlier deadline than the one it sleeps towards, and the
    faulthandler timer (a C thread started per call) is re-armed only when the
    deadline moves, and cancelled at the end of the test's protocol.
    """

    #: How much later faulthandler steps in, should our thread not run.
    BACKSTOP = 0.25

    __slots__ = (
        "_closed",
        "_condition",
        "_fault_when",
        "_fd",
        "_message",
        "_thread",
        "_wake_at",
        "_when",
    )

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._condition = threading.Condition(threading.Lock())
        self._when: float | None = None
        self._wake_at: float | None = None
        self._fault_when: float | None = None
        self._message = ""
        self._closed = False
        self._thread: threading.Thread | None = None

    def arm(self, when: float, message: str) -> None:
        """Act at ``when`` (on the monotonic clock) unless disarmed first."""
        with self._condition:
            self._when = when
            self._message = message
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="watchdog_timeout-pytest-last-resort", daemon=True
                )
                self._thread.start()
            elif self._wake_at is None or when < self._wake_at:
                self._condition.notify()
        fault_when = self._fault_when
        if fault_when is None or abs(fault_when - when) > 0.01:
            faulthandler.dump_traceback_later(
                when - clock() + self.BACKSTOP, file=self._fd, exit=True
            )
            self._fault_when = when

    def disarm(self) -> None:
        """Stand down our thread; faulthandler's timer waits for `cancel`."""
        # Under the lock: once our thread has decided to act, this waits for the exit.
        with self._condition:
            self._when = None

    def cancel(self) -> None:
        """Stand down both, at the end of a test."""
        self.disarm()
        if self._fault_when is not None:
            faulthandler.cancel_dump_traceback_later()
            self._fault_when = None

    def close(self) -> None:
        self.cancel()
        with self._condition:
            self._closed = True
            self._condition.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        with self._condition:
            while not self._closed:
                when = self._when
                left = None if when is None else when - clock()
                if left is None or left > 0:
                    self._wake_at = when
                    self._condition.wait(left)
                    self._wake_at = None
                    continue
                os.write(self._fd, self._message.encode(errors="backslashreplace"))
                faulthandler.dump_traceback(file=self._fd, all_threads=True)
                os._exit(1)
