"""The pytest plugin: a deadline per test that fails only the test that overran.

Registered through the ``pytest11`` entry point ``watchdog_timeout``; inactive until
``--deadline``, the ``deadline`` ini option, ``--deadline-session`` or a
``@pytest.mark.deadline`` asks for a limit.

Design notes
------------
A ``with deadline():`` block interrupts the code it runs, and only while the frame
that entered it is on the stack, inside the block. The limit must end *inside*
each phase: pytest's ``CallInfo.from_call`` catches every ``BaseException``, so
an interrupt still being sent after it would land in pytest's reporting, or in
the next test.

Things that don't work:

- A ``with deadline()`` in a hook wrapper around ``pytest_runtest_call``: the
  wrapper is a generator, suspended while the test runs, so its block is not on
  the stack and the interrupt waits for it to come back (a busy test never does).
- One scope around the whole protocol, rescheduled between phases: once sent, the
  interrupt is sent again until the block ends, through pytest's reporting.

Solution: each phase's user code is called from a plain frame of ours that holds
the ``with`` block (``_pytest_run``): ``item.setup`` (the fixtures) and
``item.runtest`` (the test) are replaced on the item for the duration of its
protocol; for the teardown, each finalizer on pytest's teardown stack is wrapped,
so that pytest catches what one raises and goes on with the others (wrapping
``SetupState.teardown_exact`` as a whole would leave pytest's stack half torn down).
The block ends where the phase's code returns or raises, still inside
``from_call``, and ``TimeoutExpired`` is what pytest reports for that phase. A
phase starts with what is left of the test's budget; after the time ran out, each
finalizer gets the grace period, so that the fixtures are still torn down.

The last resort, for a test that does not stop within the grace period: a thread
of ours names the test, dumps every thread's stack and exits. C code that holds
the GIL stops every Python thread, ours and the monitor included, so
``faulthandler``'s watchdog (a C thread) is armed a moment later as well; the
test's name is in its dump as the name of a frame of ours (a per-test copy of a
trampoline whose code is renamed). Both stand down when the test's protocol ends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ._pytest_run import DEFAULT_GRACE, Run, Settings, clock, session_over

__all__ = ()

_MARKER_HELP = (
    "deadline(seconds, *, func_only=None): limit the time of this test "
    "(None or 0: no limit); wins over --deadline and the deadline ini option"
)


# --- options ---------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("deadline", "per-test time limits (watchdog-timeout)")
    group.addoption(
        "--deadline",
        metavar="SECONDS",
        help="fail a test whose setup, call and teardown take longer than SECONDS "
        "(0: no limit); the session goes on",
    )
    group.addoption(
        "--deadline-func-only",
        action="store_true",
        default=None,
        help="limit the test function alone, not its setup and teardown",
    )
    group.addoption(
        "--deadline-grace",
        metavar="SECONDS",
        help="after a test's limit: seconds for it to stop (and its teardown to run) "
        f"before every thread's stack is dumped and pytest exits (default {DEFAULT_GRACE:g})",
    )
    group.addoption(
        "--deadline-session",
        metavar="SECONDS",
        help="stop the session when the whole run takes longer than SECONDS: "
        "the running test fails, no new test starts",
    )
    parser.addini("deadline", "default for --deadline (seconds)", default=None)
    parser.addini("deadline_func_only", "default for --deadline-func-only", type="bool")
    parser.addini("deadline_grace", "default for --deadline-grace (seconds)", default=None)
    parser.addini("deadline_session", "default for --deadline-session (seconds)", default=None)


def _seconds_option(config: pytest.Config, name: str) -> float | None:
    """A number of seconds from the command line or the ini file; None for 0, inf or unset."""
    value = config.getoption(name)
    where = f"--{name.replace('_', '-')}"
    if value is None:
        value = config.getini(name)
        where = f"the {name} ini option"
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{where} must be a number of seconds, got {value!r}") from None
    if not seconds >= 0:  # NaN included
        raise pytest.UsageError(f"{where} must be non-negative, got {value!r}")
    if name == "deadline_grace" and not 0 < seconds < math.inf:
        raise pytest.UsageError(f"{where} must be a positive number of seconds, got {value!r}")
    return seconds if 0 < seconds < math.inf else None


def _marker_seconds(marker: pytest.Mark) -> float | None:
    if len(marker.args) > 1 or set(marker.kwargs) - {"seconds", "func_only"}:
        raise TypeError(
            "@pytest.mark.deadline takes (seconds, *, func_only=None), "
            f"got args={marker.args!r} kwargs={marker.kwargs!r}"
        )
    value = marker.args[0] if marker.args else marker.kwargs.get("seconds")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"@pytest.mark.deadline: `seconds` must be a number or None, got {value!r}")
    if not value >= 0:
        raise ValueError(f"@pytest.mark.deadline: `seconds` must be non-negative, got {value!r}")
    return float(value) if 0 < value < math.inf else None


def _settings(config: pytest.Config) -> Settings:
    seconds = _seconds_option(config, "deadline")
    session_seconds = _seconds_option(config, "deadline_session")
    if config.getoption("trace", False):
        # pdb at the start of every test: a limit would interrupt the debugging.
        seconds = session_seconds = None
    func_only = config.getoption("deadline_func_only")
    if func_only is None:
        func_only = config.getini("deadline_func_only")
    grace = _seconds_option(config, "deadline_grace")
    return Settings(
        seconds,
        func_only=bool(func_only),
        grace=DEFAULT_GRACE if grace is None else grace,
        session_seconds=session_seconds,
    )


_SETTINGS = pytest.StashKey[Settings]()


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER_HELP)
    config.stash[_SETTINGS] = _settings(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    settings = config.stash.get(_SETTINGS, None)
    if settings is not None:
        settings.close()
        del config.stash[_SETTINGS]


def pytest_report_header(config: pytest.Config) -> str | None:
    settings = config.stash.get(_SETTINGS, None)
    return None if settings is None else settings.describe()


#: The session's end on the wall clock, handed to pytest-xdist's workers.
_WORKER_INPUT = "watchdog_timeout_session_ends"


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    settings = session.config.stash.get(_SETTINGS, None)
    if settings is None or settings.session_seconds is None:
        return
    worker_input = getattr(session.config, "workerinput", None)
    if worker_input is not None and _WORKER_INPUT in worker_input:
        # An xdist worker: the controller's session started first.
        settings.session_ends = clock() + (worker_input[_WORKER_INPUT] - time.time())
    else:
        settings.session_ends = clock() + settings.session_seconds


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, in the controller: the workers share its session's end."""
    settings = node.config.stash.get(_SETTINGS, None)
    if settings is not None and settings.session_ends is not None:
        node.workerinput[_WORKER_INPUT] = time.time() + (settings.session_ends - clock())


# --- one test ----------------------------------------------------------------------


def _start(item: pytest.Item, settings: Settings) -> Run | None:
    seconds = settings.seconds
    func_only = settings.func_only
    error: BaseException | None = None
    marker = item.get_closest_marker("deadline")
    if marker is not None and not item.config.getoption("trace", False):
        try:
            seconds = _marker_seconds(marker)
            if marker.kwargs.get("func_only") is not None:
                func_only = bool(marker.kwargs["func_only"])
        except (TypeError, ValueError) as exc:
            error = exc
    if seconds is None and settings.session_ends is None and error is None:
        return None
    if settings.session_ends is not None and clock() >= settings.session_ends:
        # The session's time ran out between tests (or before an xdist worker started).
        item.session.shouldstop = session_over(settings)
        error = pytest.skip.Exception("--deadline-session: the session's time ran out first")
    return Run(item, settings, seconds, func_only, error)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: Any) -> Iterator[None]:
    outcome: Any = yield
    excinfo = outcome.excinfo
    if excinfo is None or isinstance(excinfo[1], Exception):
        return
    settings = request.config.stash.get(_SETTINGS, None)
    run = None if settings is None else settings.running
    if run is not None and fixturedef.cached_result is None:
        run.forget_fixture(fixturedef, request)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    settings = item.config.stash.get(_SETTINGS, None)
    run = None if settings is None else _start(item, settings)
    if run is None:
        yield
        return
    run.install()
    run.settings.running = run
    try:
        yield
    finally:
        run.settings.running = None
        run.uninstall()
        run.settings.last_resort.cancel()
        ends = run.settings.session_ends
        if ends is not None and clock() >= ends and not item.session.shouldstop:
            item.session.shouldstop = session_over(run.settings)
