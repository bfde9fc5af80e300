"""@timeout: what callers see, per isolation. (Binding kinds: test_binding.py.)"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import traceback

import pytest
from helpers import assert_takes_about, run_in_thread, spin, spin_forever

from watchdog_timeout import (
    TimeoutExpired,
    _worker,
    abandoned_workers,
    deadline,
    remaining,
    timeout,
)
from watchdog_timeout._decorator import DEFAULT_GRACE

# --- results and errors pass through --------------------------------------------


@pytest.mark.parametrize("isolation", ["thread", "inline"])
def test_timeout_returns_the_result(isolation: str) -> None:
    @timeout(1, isolation=isolation)  # type: ignore[arg-type]
    def add(a: int, b: int = 0, *, c: int = 0) -> tuple[int, str]:
        return a + b + c, threading.current_thread().name

    total, thread = add(1, 2, c=3)
    assert total == 6
    if isolation == "thread":
        assert thread.startswith("watchdog_timeout-worker (")
        assert "add" in thread
    else:
        assert thread == threading.current_thread().name


def test_timeout_exception_keeps_the_worker_traceback() -> None:
    @timeout(1)
    def fails() -> None:
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside") as caught:
        fails()
    frames = [f.name for f in traceback.extract_tb(caught.value.__traceback__)]
    assert "fails" in frames
    assert frames.index("test_timeout_exception_keeps_the_worker_traceback") < frames.index("fails")


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
@pytest.mark.parametrize("isolation", ["thread", "inline"])
def test_timeout_reraises_base_exceptions(isolation: str, error: BaseException) -> None:
    @timeout(1, isolation=isolation)  # type: ignore[arg-type]
    def raises() -> None:
        raise error

    with pytest.raises(type(error)) as caught:
        raises()
    assert caught.value is error


def test_timeout_runs_in_a_copy_of_the_callers_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    @timeout(1)
    def read_and_write() -> str:
        seen = var.get()
        var.set("changed in worker")
        return seen

    var.set("from caller")
    assert read_and_write() == "from caller"
    assert var.get() == "from caller"


# --- stopping --------------------------------------------------------------------


@pytest.mark.parametrize("isolation", ["thread", "inline"])
def test_timeout_stops_a_busy_call(isolation: str) -> None:
    stopped = []

    @timeout(0.05, isolation=isolation)  # type: ignore[arg-type]
    def busy() -> None:
        try:
            spin_forever()
        finally:
            stopped.append(True)

    with assert_takes_about(0.05), pytest.raises(TimeoutExpired) as caught:
        busy()
    error = caught.value
    assert error.stopped
    assert error.name.endswith(".busy")
    assert error.seconds == 0.05
    assert stopped == [True]


def test_timeout_answers_on_time_when_the_worker_is_blocked_in_c() -> None:
    @timeout(0.1, grace=0.2)
    def blocked() -> None:
        time.sleep(30)

    with assert_takes_about(0.3), pytest.raises(TimeoutExpired) as caught:
        blocked()
    assert not caught.value.stopped
    assert "could not be stopped" in str(caught.value)
    assert any("blocked" in thread.name for thread in abandoned_workers())


def test_abandoned_worker_dies_when_it_runs_python_again_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @timeout(0.05, grace=0.05)
    def slow_then_busy() -> str:
        time.sleep(0.3)
        spin(10)  # interrupted here, at once
        return "never"

    with caplog.at_level(logging.DEBUG, logger="watchdog_timeout"):
        with pytest.raises(TimeoutExpired):
            slow_then_busy()
        worker = next(t for t in abandoned_workers() if "slow_then_busy" in t.name)
        worker.join(2.0)
        assert not worker.is_alive()
    assert worker not in abandoned_workers()
    assert "stopped after it was abandoned" in caplog.text


def test_abandoned_worker_late_result_is_logged_not_printed(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    @timeout(0.05, grace=0.05)
    def late() -> str:
        time.sleep(0.3)
        return "late result"

    with caplog.at_level(logging.DEBUG, logger="watchdog_timeout"):
        with pytest.raises(TimeoutExpired):
            late()
        worker = next(t for t in abandoned_workers() if "late" in t.name)
        worker.join(2.0)
    # The sleep returned, then the pending interrupt landed (or the result came
    # back first): either way it is logged, and nothing reaches stderr.
    assert "after it was abandoned" in caplog.text
    assert capsys.readouterr().err == ""


def test_timeout_zero_expires_at_once() -> None:
    @timeout(0)
    def busy() -> None:
        spin_forever()

    with assert_takes_about(0.0, slack=0.3), pytest.raises(TimeoutExpired):
        busy()


def test_timeout_none_means_no_limit() -> None:
    @timeout(None)
    def short() -> float | None:
        spin(0.05)
        return remaining()

    assert short() is None


# --- computed limits and bad input --------------------------------------------------


def test_timeout_computed_from_the_arguments() -> None:
    seen = []

    def limit(work: float, *, allowance: float) -> float:
        seen.append((work, allowance))
        return allowance

    @timeout(limit)
    def work(work: float, *, allowance: float) -> str:
        spin(work)
        return "done"

    assert work(0.01, allowance=1.0) == "done"
    with pytest.raises(TimeoutExpired) as caught:
        work(5.0, allowance=0.05)
    assert caught.value.seconds == 0.05
    assert seen == [(0.01, 1.0), (5.0, 0.05)]


def test_timeout_computed_limit_is_checked_at_call_time() -> None:
    @timeout(lambda n: n)
    def f(n: object) -> None:
        pass

    with pytest.raises(ValueError, match="`seconds` must be non-negative, got -1"):
        f(-1)
    with pytest.raises(TypeError, match="got 'x' \\(str\\)"):
        f("x")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"seconds": -1}, ValueError, "`seconds` must be non-negative, got -1"),
        ({"seconds": "1"}, TypeError, "`seconds` must be a number of seconds or None"),
        ({"seconds": True}, TypeError, "got True (bool)"),
        ({"seconds": 1, "grace": -0.5}, ValueError, "`grace` must be non-negative, got -0.5"),
        ({"seconds": 1, "grace": None}, ValueError, "`grace` must be a finite number"),
        ({"seconds": 1, "isolation": "fiber"}, ValueError, "got 'fiber'"),
        ({"seconds": 1, "label": 3}, TypeError, "`label` must be a string"),
        ({"seconds": 1, "start_method": "fork"}, ValueError, "isolation='process'"),
    ],
)
def test_timeout_rejects_bad_options_at_decoration(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        timeout(**kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_timeout_label_names_the_call() -> None:
    @timeout(0.05, label="nightly report")
    def report() -> None:
        spin_forever()

    with pytest.raises(TimeoutExpired, match="nightly report exceeded"):
        report()


# --- inline -------------------------------------------------------------------------


def test_inline_keeps_thread_bound_objects_working() -> None:
    connection = sqlite3.connect(":memory:")
    try:

        @timeout(1, isolation="inline")
        def query_inline() -> int:
            return int(connection.execute("select 41 + 1").fetchone()[0])

        @timeout(1)
        def query_in_worker() -> int:
            return int(connection.execute("select 1").fetchone()[0])

        assert query_inline() == 42
        with pytest.raises(sqlite3.ProgrammingError, match="thread"):
            query_in_worker()
    finally:
        connection.close()


@pytest.mark.skipif(sys.platform == "win32", reason="the wake-up signal is POSIX")
def test_inline_wakes_the_main_thread_from_a_blocking_call() -> None:
    @timeout(0.2, isolation="inline")
    def sleeps() -> None:
        time.sleep(10)

    with assert_takes_about(0.2), pytest.raises(TimeoutExpired):
        sleeps()


def test_inline_limits_a_builtin_called_directly() -> None:
    # No Python frame of the user's between ours and the C call: the library's own
    # frame hosts the block, and must not hold the interrupt back.
    with assert_takes_about(0.2), pytest.raises(TimeoutExpired):
        timeout(0.2, isolation="inline")(time.sleep)(3)


# --- nesting ----------------------------------------------------------------------------


def test_nested_decorated_calls_the_earliest_reports() -> None:
    @timeout(0.05, label="inner")
    def inner() -> None:
        spin_forever()

    @timeout(5, label="outer")
    def outer() -> None:
        inner()

    with pytest.raises(TimeoutExpired) as caught:
        outer()
    assert caught.value.name == "inner"


def test_outer_expiry_interrupts_the_inner_worker_instead_of_abandoning_it() -> None:
    finished = []

    @timeout(5, label="inner")
    def inner() -> None:
        try:
            spin_forever()
        finally:
            finished.append("inner")

    @timeout(0.1, label="outer")
    def outer() -> None:
        inner()

    with assert_takes_about(0.1), pytest.raises(TimeoutExpired) as caught:
        outer()
    assert caught.value.name == "outer"
    assert caught.value.stopped
    assert finished == ["inner"]
    assert not any("inner" in t.name for t in abandoned_workers())


def test_outer_deadline_reaches_a_decorated_call() -> None:
    @timeout(5, label="call")
    def busy() -> None:
        spin_forever()

    with assert_takes_about(0.05), pytest.raises(TimeoutExpired) as caught:
        with deadline(0.05, label="block"):
            busy()
    assert caught.value.name == "block"


def test_remaining_in_the_worker_includes_the_callers_deadlines() -> None:
    @timeout(10)
    def left() -> float | None:
        return remaining()

    with deadline(1):
        seen = left()
    assert seen is not None
    assert 0.5 < seen <= 1.0


# --- Ctrl-C ----------------------------------------------------------------------------


@pytest.mark.usefixtures("ctrl_c_raises")
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery")
def test_ctrl_c_in_the_caller_stops_the_worker_and_propagates() -> None:
    finished = []

    @timeout(10)
    def busy() -> None:
        try:
            spin_forever()
        finally:
            finished.append(True)

    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(0.1, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    try:
        with assert_takes_about(0.1), pytest.raises(KeyboardInterrupt):
            busy()
    finally:
        timer.join()
    assert finished == [True]
    assert not any("busy" in t.name for t in abandoned_workers())


# --- async -----------------------------------------------------------------------------


def test_async_function_is_limited_on_its_loop() -> None:
    @timeout(0.05)
    async def sleeps() -> str:
        await asyncio.sleep(5)
        return "never"

    @timeout(1)
    async def quick() -> str:
        await asyncio.sleep(0)
        return "done"

    async def main() -> tuple[str, str]:
        with pytest.raises(TimeoutExpired) as caught:
            await sleeps()
        assert caught.value.name.endswith(".sleeps")
        return await quick(), threading.current_thread().name

    result, thread = asyncio.run(main())
    assert result == "done"
    assert thread == threading.current_thread().name


def test_async_external_cancellation_stays_cancelled_error() -> None:
    @timeout(5)
    async def sleeps() -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        task = asyncio.ensure_future(sleeps())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_generator_function_is_refused() -> None:
    with pytest.raises(TypeError, match="with deadline"):

        @timeout(1)
        def numbers() -> object:
            yield 1


# --- workers ------------------------------------------------------------------------------


def test_workers_are_reused_and_no_thread_is_left_behind() -> None:
    @timeout(0.002)
    def busy() -> None:
        spin_forever()

    @timeout(1)
    def quick() -> int:
        return threading.get_ident()

    before = set(threading.enumerate())
    for _ in range(300):  # a thread left behind per timeout would show 300 times over
        with pytest.raises(TimeoutExpired):
            busy()
    idents = {quick() for _ in range(50)}
    assert len(idents) == 1  # one warm worker serves calls one after another
    assert not any("busy" in t.name for t in abandoned_workers())
    extra = [t for t in set(threading.enumerate()) - before if t.name != "watchdog_timeout-monitor"]
    assert len(extra) <= 2, [t.name for t in extra]


def test_idle_workers_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_worker, "IDLE_TIMEOUT", 0.05)

    @timeout(1)
    def which() -> threading.Thread:
        return threading.current_thread()

    worker = which()
    worker.join(2.0)
    assert not worker.is_alive()


def test_100_threads_calling_at_once_get_their_own_results() -> None:
    @timeout(5)
    def square(n: int) -> int:
        spin(0.001)
        return n * n

    results: dict[int, int] = {}
    barrier = threading.Barrier(100)

    def call(n: int) -> None:
        barrier.wait()
        results[n] = square(n)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {n: n * n for n in range(100)}


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("fast_switching")
def test_10000_boundary_trials_never_give_a_wrong_result() -> None:
    limit = 0.0005

    @timeout(limit)
    def work(seconds: float) -> str:
        spin(seconds)
        return "finished"

    counts = {"finished": 0, "timeout": 0}
    for trial in range(10_000):
        try:
            try:
                outcome = work(limit * (0.5 + (trial % 20) / 10))
                assert outcome == "finished"
                counts["finished"] += 1
            except TimeoutExpired:
                counts["timeout"] += 1
            spin(0.00005)  # a stray interrupt in the caller would land here
        except BaseException as exc:
            pytest.fail(f"trial {trial}: {exc!r} escaped")
    assert counts["finished"] > 0
    assert counts["timeout"] > 0


def test_a_worker_thread_caller_works_too() -> None:
    @timeout(0.05)
    def busy() -> None:
        spin_forever()

    with pytest.raises(TimeoutExpired):
        run_in_thread(busy)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_timeout_works_in_a_forked_child() -> None:
    @timeout(0.1)
    def busy() -> None:
        spin_forever()

    @timeout(1)
    def answer() -> int:
        return 42

    assert answer() == 42  # a warm worker exists now: the child must not use it
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child reports through its exit code)
        code = 1
        try:
            assert answer() == 42
            try:
                busy()
            except TimeoutExpired:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_no_grace_never_lets_the_raw_interrupt_out() -> None:
    # The caller gives up at the deadline itself, possibly before the monitor has
    # marked the scope as expiring: it must still raise TimeoutExpired.
    @timeout(0.02, grace=0)
    def busy() -> None:
        spin_forever()

    for _ in range(50):
        with pytest.raises(TimeoutExpired):
            busy()


def test_a_call_abandoned_before_it_began_does_not_take_later_deadlines() -> None:
    @timeout(0, grace=0)
    def slow() -> None:
        time.sleep(1.0)

    for _ in range(5):
        with pytest.raises(TimeoutExpired):
            slow()
        # The next deadline of this thread interrupts this thread, on time.
        with assert_takes_about(0.1, slack=0.3), pytest.raises(TimeoutExpired), deadline(0.1):
            spin_forever()


@pytest.mark.parametrize("isolation", ["thread", "inline"])
def test_on_expire_unblocks_the_call_before_it_is_interrupted(isolation: str) -> None:
    left, right = socket.socketpair()
    with left, right:

        @timeout(0.1, isolation=isolation, on_expire=lambda: right.shutdown(socket.SHUT_RDWR))  # type: ignore[arg-type]
        def receive() -> bytes:
            return left.recv(10)  # blocked until on_expire shuts the pair down

        with assert_takes_about(0.1), pytest.raises(TimeoutExpired):
            while True:
                receive()  # returns b"" once shut down; the interrupt follows


def test_inline_on_expire_unblocks_a_call_in_another_thread() -> None:
    # Outside the main thread no signal wakes a blocking call: only on_expire can.
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(5)  # without on_expire: a socket.timeout after 5 s

        @timeout(0.1, isolation="inline", on_expire=lambda: right.shutdown(socket.SHUT_RDWR))
        def receive() -> bytes:
            return left.recv(10)

        def receive_until_interrupted() -> None:
            with assert_takes_about(0.1), pytest.raises(TimeoutExpired):
                while True:
                    receive()

        run_in_thread(receive_until_interrupted)


def test_on_expire_is_refused_for_processes() -> None:
    with pytest.raises(ValueError, match="on_expire"):
        timeout(1, isolation="process", on_expire=print)


def test_import_does_not_load_heavy_modules() -> None:
    # asyncio, multiprocessing, inspect, wrapt, ctypes, logging: imported when a
    # feature needs them, never by `import watchdog_timeout` itself.
    code = (
        "import sys, watchdog_timeout; "
        "heavy = ('asyncio', 'multiprocessing', 'inspect', 'wrapt', 'ctypes', 'logging', "
        "'dis', 'cloudpickle', 'decimal'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    assert _fresh_python(code).strip() == "[]"


def _fresh_python(code: str) -> str:
    """What ``code`` prints when run by a fresh interpreter (it must exit with 0)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_call_that_ends_in_time_arms_nothing() -> None:
    # Issue 12: the caller's own wait is the timer; the monitor is started (and the
    # call's scope armed) only once a limit has passed.
    code = (
        "import threading, time; from watchdog_timeout import timeout, remaining\n"
        "left = timeout(10)(remaining)()\n"
        "names = sorted(t.name for t in threading.enumerate())\n"
        "try:\n"
        "    timeout(0.05)(time.sleep)(1)\n"
        "except TimeoutError:\n"
        "    pass\n"
        "print(round(left), [n for n in names if 'monitor' in n], "
        "any('monitor' in t.name for t in threading.enumerate()))"
    )
    assert _fresh_python(code).split() == ["10", "[]", "True"]


def test_default_grace_answers_a_blocked_call_soon_after_its_limit() -> None:
    assert DEFAULT_GRACE <= 0.15
    with assert_takes_about(0.1 + DEFAULT_GRACE, slack=0.6), pytest.raises(TimeoutExpired) as e:
        timeout(0.1)(time.sleep)(2)
    assert not e.value.stopped


def test_bare_decorator_says_what_happened_and_how_to_fix_it() -> None:
    @timeout  # type: ignore[arg-type]  # the mistake: no parentheses
    def fetch(url: str) -> str:
        return url

    with pytest.raises(
        TypeError, match=r"fetch\(\) was decorated with a bare @timeout.*@timeout\(seconds\)"
    ):
        fetch("https://example.org")  # type: ignore[arg-type]
