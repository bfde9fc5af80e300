"""The machinery of the pytest plugin: one test's limits, and the last resort.

See ``_pytest_plugin`` for the design; this module holds what runs during a test:
``Run`` installs a plain frame of ours (``_limited``, holding the ``with deadline()``
block) under each phase's code, and ``_pytest_last_resort`` ends the process when a test
does not stop.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import types
from typing import Any, Callable, TypeVar

import pluggy
import pytest

from . import TimeoutExpired, deadline, shield
from ._pytest_last_resort import LastResort

__all__ = ("DEFAULT_GRACE", "Run", "Settings", "clock", "session_over")

#: The library's clock (only its public API is used here).
clock = time.monotonic

_T = TypeVar("_T")

#: Seconds a test that overran gets to stop, and each of its finalizers to run.
DEFAULT_GRACE = 5.0

_OWN_DIR = os.path.dirname(os.path.abspath(__file__))
_PYTEST_DIR = os.path.dirname(os.path.abspath(sys.modules[pytest.Item.__module__].__file__ or ""))
_PLUGGY_DIR = os.path.dirname(os.path.abspath(pluggy.__file__ or ""))


class Settings:
    """The session's options, read once at configure time, and what they share."""

    __slots__ = (
        "func_only",
        "grace",
        "last_resort",
        "running",
        "seconds",
        "session_ends",
        "session_seconds",
        "stderr_fd",
        "tearing_down",
    )

    def __init__(
        self,
        seconds: float | None,
        *,
        func_only: bool,
        grace: float,
        session_seconds: float | None,
    ) -> None:
        self.seconds = seconds
        self.func_only = func_only
        self.grace = grace
        self.session_seconds = session_seconds
        #: When the session's time runs out, on the monotonic clock (set at its start).
        self.session_ends: float | None = None
        # The real stderr for faulthandler: pytest captures fd 2 during tests.
        self.stderr_fd = os.dup(_stderr_fileno())
        self.last_resort = LastResort(self.stderr_fd)
        #: The test whose protocol runs, and the one whose teardown runs, if limited.
        self.running: Run | None = None
        self.tearing_down: Run | None = None

    def describe(self) -> str | None:
        parts = []
        if self.seconds is not None:
            covers = "the test function" if self.func_only else "setup, call and teardown"
            parts.append(f"{self.seconds:g} s per test ({covers}), grace {self.grace:g} s")
        if self.session_seconds is not None:
            parts.append(f"{self.session_seconds:g} s for the session")
        return "deadline: " + "; ".join(parts) if parts else None

    def close(self) -> None:
        self.last_resort.close()
        os.close(self.stderr_fd)


def _stderr_fileno() -> int:
    try:
        fileno = sys.stderr.fileno()
        if fileno >= 0:
            return fileno
    except (AttributeError, ValueError, OSError):
        pass
    # pytest-xdist workers replace sys.stderr with an object that has no file.
    stream = sys.__stderr__
    return 2 if stream is None else stream.fileno()


def _limited(run: Run, when: str, func: Callable[..., _T], *args: Any) -> _T:
    """Call one phase's code inside its ``with deadline()`` block (see Design notes)."""
    __tracebackhide__ = True
    if run.error is not None and when == "setup":
        raise run.error
    budget = run.budget(when)
    if budget is None:
        return func(*args)
    seconds, limit, name = budget
    run.ident = threading.get_ident()
    run.frames = None
    scope = deadline(seconds, label=name, on_expire=run.record_stack)
    with shield():  # an outer scope's interrupt must not leave our lock held
        run.arm_last_resort(seconds)
    try:
        with scope:
            result = func(*args)
    except TimeoutExpired as exc:
        if not scope.expired:
            raise  # an inner deadline of the test's own
        raise run.failure(limit, name, stopped=exc.stopped) from None
    finally:
        with shield():
            run.disarm_last_resort()
    if run.frames is not None:
        # The time ran out, and the code caught the interrupt and returned all the same.
        raise run.failure(limit, name, stopped=True) from None
    return result


_LIMITED_CODE = _limited.__code__


def _trampoline(run: Run, when: str, func: Callable[..., _T], *args: Any) -> _T:
    __tracebackhide__ = True
    return _limited(run, when, func, *args)


def _named_trampoline(nodeid: str) -> Callable[..., Any]:
    # faulthandler prints a frame's code name: this one names the test in its dump.
    title = f"<test {nodeid}, limited by watchdog_timeout>"
    code = _trampoline.__code__.replace(co_name=title)
    if sys.version_info >= (3, 11):
        code = code.replace(co_qualname=title)
    return types.FunctionType(code, _trampoline.__globals__, title)


class Run:
    """The deadline bookkeeping of one test's protocol."""

    __slots__ = (
        "error",
        "expired",
        "frames",
        "func_only",
        "ident",
        "item",
        "saved",
        "seconds",
        "settings",
        "started",
        "trampoline",
    )

    def __init__(
        self,
        item: pytest.Item,
        settings: Settings,
        seconds: float | None,
        func_only: bool,
        error: BaseException | None,
    ) -> None:
        self.item = item
        self.settings = settings
        self.seconds = seconds
        self.func_only = func_only
        self.error = error
        self.started = clock()
        self.expired = False
        self.ident = 0
        #: Set at expiry (by ``record_stack``): where the test's thread was.
        self.frames: list[tuple[types.FrameType, int, int]] | None = None
        self.saved: list[tuple[object, str, object]] = []
        self.trampoline = _named_trampoline(item.nodeid)

    # --- installing and removing the phase wrappers ----------------------------

    def install(self) -> None:
        item = self.item
        self._wrap(item, "runtest", "call")
        if not self.func_only or self.settings.session_seconds is not None or self.error:
            self._wrap(item, "setup", "setup")
            setup_state = getattr(item.session, "_setupstate", None)
            if setup_state is not None and hasattr(setup_state, "teardown_exact"):
                self._wrap_teardown(setup_state)

    def _wrap(self, owner: object, name: str, when: str) -> None:
        original = getattr(owner, name)
        self.saved.append((owner, name, vars(owner).get(name, _MISSING)))
        trampoline = self.trampoline

        def phase(*args: Any) -> Any:
            __tracebackhide__ = True
            return trampoline(self, when, original, *args)

        setattr(owner, name, phase)

    def _wrap_teardown(self, setup_state: Any) -> None:
        original = setup_state.teardown_exact
        self.saved.append(
            (setup_state, "teardown_exact", vars(setup_state).get(_TEARDOWN, _MISSING))
        )
        trampoline = self.trampoline

        def teardown_exact(nextitem: pytest.Item | None) -> None:
            __tracebackhide__ = True
            if self._wrap_finalizers(setup_state):
                # Each finalizer in its own block: pytest catches what one raises
                # and goes on with the others, keeping its own state consistent.
                self.settings.tearing_down = self
                try:
                    original(nextitem)
                finally:
                    self.settings.tearing_down = None
                return
            try:
                trampoline(self, "teardown", original, nextitem)
            except TimeoutExpired:
                if not self.expired:
                    raise
                # The node being torn down is lost; tear down the rest of them.
                with contextlib.suppress(Exception):
                    trampoline(self, "teardown", original, nextitem)
                raise

        setattr(setup_state, _TEARDOWN, teardown_exact)

    def _wrap_finalizers(self, setup_state: Any) -> bool:
        """Run each pending finalizer through ``_limited``; False if pytest's state is unknown."""
        stack = getattr(setup_state, "stack", None)
        if not isinstance(stack, dict):
            return False
        entries = list(stack.values())
        if not all(isinstance(entry, tuple) and isinstance(entry[0], list) for entry in entries):
            return False
        settings = self.settings
        for entry in entries:
            entry[0][:] = [
                f if isinstance(f, _Finalizer) else _Finalizer(f, settings) for f in entry[0]
            ]
        return True

    def uninstall(self) -> None:
        while self.saved:
            owner, name, previous = self.saved.pop()
            if previous is _MISSING:
                vars(owner).pop(name, None)
            else:
                setattr(owner, name, previous)

    # --- one phase ---------------------------------------------------------------

    def budget(self, when: str) -> tuple[float, float, str] | None:
        """``(seconds left, the limit to report, its name)`` for a phase, or None."""
        now = clock()
        nodeid = self.item.nodeid
        best: tuple[float, float, str] | None = None
        if when == "teardown" and self.expired:
            # Whatever ran out, the fixtures are still torn down, each in the grace period.
            grace = self.settings.grace
            return (grace, grace, f"the teardown of {nodeid} after its time ran out")
        if self.seconds is not None:
            if self.func_only:
                if when == "call":
                    best = (self.seconds, self.seconds, nodeid)
            else:
                best = (self.started + self.seconds - now, self.seconds, nodeid)
        ends = self.settings.session_ends
        if ends is not None and (best is None or ends - now < best[0]):
            limit = self.settings.session_seconds
            assert limit is not None
            best = (ends - now, limit, _SESSION)
        if best is None:
            return None
        return (max(0.0, best[0]), best[1], best[2])

    def record_stack(self) -> None:
        """At expiry, in the monitor thread: where the test's thread is."""
        try:
            frame = sys._current_frames().get(self.ident)
            frames = []
            while frame is not None and frame.f_code is not _LIMITED_CODE:
                line = frame.f_lineno or frame.f_code.co_firstlineno
                frames.append((frame, line, frame.f_lasti))
                frame = frame.f_back
            self.frames = frames
            del frame
        except Exception:  # the monitor must go on; the report goes without the stack
            self.frames = []

    def failure(self, limit: float, name: str, *, stopped: bool) -> TimeoutExpired:
        """The TimeoutExpired to report: the limit, and the stack at expiry as traceback."""
        self.expired = True
        # unittest's runner caught the interrupt as an error; pytest would report that.
        caught = getattr(self.item, "_excinfo", None)
        if isinstance(caught, list):
            caught[:] = [info for info in caught if isinstance(info.value, Exception)]
        if name == _SESSION:
            self.item.session.shouldstop = session_over(self.settings)
        frames = [entry for entry in self.frames or () if not _is_own(entry[0])]
        self.frames = None
        user = [entry for entry in frames if not _is_framework(entry[0])] or frames
        stack = tuple((f.f_code.co_filename, line, f.f_code.co_name) for f, line, _ in user)
        failure = TimeoutExpired(
            limit, elapsed=clock() - self.started, name=name, stopped=stopped, stack=stack
        )
        traceback: types.TracebackType | None = None
        for frame, line, lasti in frames:  # innermost first: build from the inside out
            traceback = types.TracebackType(traceback, frame, max(lasti, 0), line)
        return failure.with_traceback(traceback)

    def forget_fixture(self, fixturedef: Any, request: Any) -> None:
        """Set a fixture that the interrupt cut short back to "not set up".

        pytest records what a fixture raised, except a ``BaseException`` such as
        the interrupt: it would find the fixture neither set up nor failed.
        """
        try:
            with shield():
                fixturedef.cached_result = (None, fixturedef.cache_key(request), None)
                fixturedef.finish(request)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:
            # What a post-finalizer hook raised (the fixture is reset all the same),
            # or the interrupt, raised again where the shield ends: the exception on
            # its way out of the fixture is one already.
            pass

    # --- the last resort -------------------------------------------------------

    def arm_last_resort(self, seconds: float) -> None:
        grace = self.settings.grace
        message = (
            f"\nwatchdog_timeout: {self.item.nodeid} did not stop within {grace:g} s after "
            f"its time limit ran out (blocked in a call outside the main thread, or in C "
            f"code): the stacks of all threads follow, then pytest exits.\n"
        )
        self.settings.last_resort.arm(clock() + seconds + grace, message)

    def disarm_last_resort(self) -> None:
        self.settings.last_resort.disarm()


class _Finalizer:
    """A finalizer on pytest's teardown stack, run in the limit of the test tearing down.

    Collectors' finalizers stay on the stack over many tests: they are wrapped once,
    and find the test whose teardown runs them when they run (none at the session's end).
    """

    __slots__ = ("function", "settings")

    def __init__(self, function: Callable[[], object], settings: Settings) -> None:
        self.function = function
        self.settings = settings

    def __call__(self) -> object:
        __tracebackhide__ = True
        run = self.settings.tearing_down
        if run is None:
            return self.function()
        return run.trampoline(run, "teardown", self.function)


_MISSING = object()
_SESSION = "the test session (--deadline-session)"


def session_over(settings: Settings) -> str:
    return f"--deadline-session: the session took longer than {settings.session_seconds:g} seconds"


_TEARDOWN = "teardown_exact"


def _is_own(frame: types.FrameType) -> bool:
    return frame.f_code.co_filename.startswith(_OWN_DIR)


def _is_framework(frame: types.FrameType) -> bool:
    filename = frame.f_code.co_filename
    return filename.startswith((_PYTEST_DIR, _PLUGGY_DIR))
