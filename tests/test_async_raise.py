"""async_raise() and stop_thread(): raising an exception inside another thread.

What lands where (a busy loop at once, a sleeping worker only after the sleep), what
is refused before anything is sent (instances, non-classes, bad targets, the current
thread, threads not started or finished, a dead Thread whose ident a new thread got),
the ``found > 1`` and "unsupported interpreter" paths, and the clearing binding:
``(c_ulong, py_object)`` turns a None "clear" into a queued ``Py_None`` that kills the
target with SystemError, while the package's withdrawal really withdraws.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Callable

import pytest
from helpers import run_python

import watchdog_timeout
from watchdog_timeout import _async_raise, async_raise, stop_thread
from watchdog_timeout._async_raise import (
    can_clear,
    clear_async_exc,
    raise_in,
    send_async_exc,
    withdraw_async_exc,
)

CPYTHON = sys.implementation.name == "cpython"
needs_pythonapi = pytest.mark.skipif(
    not CPYTHON, reason="PyPy has no ctypes.pythonapi and cannot withdraw a pending exception"
)


class _Stop(Exception):
    """What the tests raise in their workers."""


def _spin(seconds: float, stop: threading.Event) -> None:
    # The loop sits in a function of its own: 3.13 lets an exception raised on the
    # back-edge of a loop written directly in a `try` escape that `try`.
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop.is_set():
        pass


class Worker:
    """A thread that runs ``body`` and records how it ended."""

    def __init__(self, body: Callable[[Worker], None], name: str = "test-async-raise") -> None:
        self.body = body
        self.ready = threading.Event()  # the body is about to do its work
        self.release = threading.Event()  # set by the test to end the work early
        self.caught: BaseException | None = None
        self.finished = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self.body(self)
            self.finished = True
        except BaseException as exc:  # recorded for the test
            self.caught = exc

    @property
    def ident(self) -> int:
        ident = self.thread.ident
        assert ident is not None, "the worker has not started"
        return ident

    def start(self) -> Worker:
        self.thread.start()
        assert self.ready.wait(10), "the worker did not start"
        return self

    def join(self, timeout: float = 10.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker is still running"

    def finish(self) -> None:
        self.release.set()
        self.join()


def _busy(worker: Worker) -> None:
    worker.ready.set()
    _spin(10.0, worker.release)


def _idle(worker: Worker) -> None:
    # Blocked in C until released, then runs bytecode: whatever was queued lands there.
    worker.ready.set()
    worker.release.wait(10)
    _spin(0.01, threading.Event())


Spawn = Callable[[Callable[[Worker], None]], Worker]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start workers; release and join them at the end, even if the test failed."""
    started: list[Worker] = []

    def start(body: Callable[[Worker], None]) -> Worker:
        worker = Worker(body)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.finish()


@pytest.fixture
def idle(spawn: Spawn) -> Iterator[Worker]:
    """A live thread blocked in C; at the end it must finish without any exception."""
    worker = spawn(_idle)
    yield worker
    worker.finish()
    assert worker.caught is None, f"something was queued on the thread: {worker.caught!r}"
    assert worker.finished


# --- delivery ---------------------------------------------------------------------


@pytest.mark.parametrize("by", ["thread", "ident"])
def test_async_raise_interrupts_a_busy_loop(by: str, spawn: Spawn) -> None:
    worker = spawn(_busy)
    target: threading.Thread | int = worker.thread if by == "thread" else worker.ident
    start = time.monotonic()
    async_raise(target, _Stop)
    worker.join()
    assert type(worker.caught) is _Stop
    assert time.monotonic() - start < 5.0  # not the 10 s the loop would take


def test_stop_thread_interrupts_a_busy_loop_with_system_exit(spawn: Spawn) -> None:
    worker = spawn(_busy)
    stop_thread(worker.thread)
    worker.join()
    assert type(worker.caught) is SystemExit
    assert not worker.finished


def test_stop_thread_raises_the_given_class(spawn: Spawn) -> None:
    worker = spawn(_busy)
    stop_thread(worker.thread, _Stop)
    worker.join()
    assert type(worker.caught) is _Stop


def test_stop_thread_refuses_an_ident(spawn: Spawn) -> None:
    worker = spawn(_busy)
    with pytest.raises(TypeError, match=r"`thread` must be a threading\.Thread"):
        stop_thread(worker.thread.ident)  # type: ignore[arg-type]
    worker.finish()
    assert worker.caught is None


def test_async_raise_lands_in_a_sleeping_worker_only_after_the_sleep(spawn: Spawn) -> None:
    sleep = 0.3
    landed_after: list[float] = []

    def body(worker: Worker) -> None:
        start = time.monotonic()
        worker.ready.set()
        try:
            time.sleep(sleep)
            _spin(5.0, worker.release)
        finally:
            landed_after.append(time.monotonic() - start)

    worker = spawn(body)
    time.sleep(0.05)
    async_raise(worker.thread, _Stop)
    worker.join()
    assert type(worker.caught) is _Stop
    assert sleep * 0.95 <= landed_after[0] < 5.0, f"landed after {landed_after[0]:.3f} s"


def test_raise_in_returns_how_many_threads_got_it(idle: Worker) -> None:
    assert raise_in(_unknown_ident(), _Stop) == 0
    # Queued and then withdrawn (or, where it cannot be withdrawn, never checked).
    if can_clear():
        assert raise_in(idle.ident, _Stop) == 1
        clear_async_exc(idle.ident)


# --- refused before anything is sent -----------------------------------------------


def test_async_raise_refuses_an_exception_instance(idle: Worker) -> None:
    with pytest.raises(TypeError, match="exception class") as info:
        async_raise(idle.thread, KeyError("x"))  # type: ignore[arg-type]
    assert "pass KeyError itself" in str(info.value)
    assert "KeyError('x')" in str(info.value)


@pytest.mark.parametrize("exc_type", [int, object, type, str], ids=repr)
def test_async_raise_refuses_a_class_that_is_not_an_exception(
    idle: Worker, exc_type: object
) -> None:
    with pytest.raises(TypeError, match="`exc_type` must be an exception class") as info:
        async_raise(idle.thread, exc_type)  # type: ignore[arg-type]
    assert repr(exc_type) in str(info.value)


@pytest.mark.parametrize("exc_type", [None, "KeyError", 1, (KeyError,)], ids=repr)
def test_async_raise_refuses_a_non_class(idle: Worker, exc_type: object) -> None:
    with pytest.raises(TypeError, match="`exc_type` must be an exception class"):
        async_raise(idle.thread, exc_type)  # type: ignore[arg-type]


def test_stop_thread_refuses_an_exception_instance(idle: Worker) -> None:
    with pytest.raises(TypeError, match="pass SystemExit itself"):
        stop_thread(idle.thread, SystemExit())  # type: ignore[arg-type]


@pytest.mark.parametrize("target", [True, False, 1.5, "1", None, [1], object()], ids=repr)
def test_async_raise_refuses_a_target_that_is_neither_thread_nor_int(
    idle: Worker, target: object
) -> None:
    with pytest.raises(TypeError, match=r"`thread_or_ident` must be a threading\.Thread"):
        async_raise(target, _Stop)  # type: ignore[arg-type]


@pytest.mark.parametrize("ident", [0, -1, -(2**64)])
def test_async_raise_refuses_a_non_positive_ident(ident: int) -> None:
    with pytest.raises(ValueError, match=f"positive thread ident, got {ident}"):
        async_raise(ident, _Stop)


def _unknown_ident() -> int:
    ident = 1
    assert ident not in sys._current_frames()
    return ident


def test_async_raise_refuses_an_unknown_ident() -> None:
    ident = _unknown_ident()
    with pytest.raises(ValueError, match=f"no running thread has the ident {ident}"):
        async_raise(ident, _Stop)


def test_async_raise_refuses_an_ident_too_large_for_the_c_call(spawn: Spawn) -> None:
    # No thread has such an ident; it must not wrap around onto a live thread's.
    worker = spawn(_idle)
    alias = 2**64 + worker.ident
    outcome: BaseException | None = None
    try:
        async_raise(alias, _Stop)
    except Exception as exc:  # checked below, after the worker is released
        outcome = exc
    worker.finish()
    assert worker.caught is None, f"async_raise(2**64 + ident) hit the thread: {worker.caught!r}"
    assert isinstance(outcome, ValueError), f"expected ValueError, got {outcome!r}"


def test_async_raise_refuses_a_thread_not_started() -> None:
    thread = threading.Thread(target=lambda: None, name="never started")
    with pytest.raises(ValueError, match="'never started' has not been started"):
        async_raise(thread, _Stop)
    with pytest.raises(ValueError, match="has not been started"):
        stop_thread(thread)


def test_async_raise_refuses_a_finished_thread() -> None:
    thread = threading.Thread(target=lambda: None, name="finished")
    thread.start()
    thread.join()
    with pytest.raises(ValueError, match="'finished' is not alive"):
        async_raise(thread, _Stop)
    with pytest.raises(ValueError, match="is not alive"):
        stop_thread(thread)


def test_async_raise_refuses_the_current_thread() -> None:
    current = threading.current_thread()
    for target in (current, threading.get_ident()):
        with pytest.raises(ValueError, match="current thread"):
            async_raise(target, _Stop)
    with pytest.raises(ValueError, match="current thread"):
        stop_thread(current)


def test_async_raise_refuses_the_current_thread_in_a_worker(spawn: Spawn) -> None:
    refused: list[BaseException] = []

    def body(worker: Worker) -> None:
        worker.ready.set()
        for target in (worker.thread, threading.get_ident()):
            try:
                async_raise(target, _Stop)
            except ValueError as exc:
                refused.append(exc)

    worker = spawn(body)
    worker.join()
    assert worker.caught is None
    assert worker.finished
    assert len(refused) == 2


def test_async_raise_refuses_a_dead_thread_whose_ident_was_reused() -> None:
    def run_a() -> None:
        pass

    for _ in range(1000):
        old = threading.Thread(target=run_a, name="old")
        old.start()
        old.join()
        new = Worker(_idle, name="new").start()
        if new.thread.ident == old.ident:
            break
        new.finish()
    else:
        pytest.fail("no new thread reused the ident of a finished one in 1000 tries")
    try:
        with pytest.raises(ValueError, match="'old' is not alive"):
            async_raise(old, _Stop)
        with pytest.raises(ValueError):
            stop_thread(old)
    finally:
        new.finish()
    assert new.caught is None, f"the new thread was hit: {new.caught!r}"
    assert new.finished


# --- the interpreter's answers ------------------------------------------------------


def test_async_raise_withdraws_when_several_threads_matched(
    monkeypatch: pytest.MonkeyPatch, idle: Worker
) -> None:
    sent: list[tuple[int, type[BaseException]]] = []
    withdrawn: list[tuple[int, None]] = []

    def fake_send(ident: int, exc_type: type[BaseException]) -> int:
        sent.append((ident, exc_type))
        return 2

    def fake_withdraw(ident: int, exc: None) -> int:
        withdrawn.append((ident, exc))
        return 2

    monkeypatch.setattr(_async_raise, "send_async_exc", fake_send)
    monkeypatch.setattr(_async_raise, "withdraw_async_exc", fake_withdraw)
    ident = idle.ident
    with pytest.raises(SystemError, match="withdrawn") as info:
        async_raise(idle.thread, _Stop)
    assert "2 threads" in str(info.value)
    assert sent == [(ident, _Stop)]
    assert withdrawn == [(ident, None)]


@pytest.mark.parametrize(
    "call",
    [lambda thread: async_raise(thread, _Stop), stop_thread],
    ids=["async_raise", "stop_thread"],
)
def test_async_raise_unsupported_interpreter_raises_runtime_error(
    monkeypatch: pytest.MonkeyPatch, idle: Worker, call: Callable[[threading.Thread], None]
) -> None:
    message = "fakepython 0.1 offers no way to raise an exception in another thread"
    monkeypatch.setattr(_async_raise, "send_async_exc", None)
    monkeypatch.setattr(_async_raise, "_unsupported", message)
    with pytest.raises(RuntimeError) as info:
        call(idle.thread)
    assert str(info.value) == message


def test_package_imports_where_threads_cannot_be_interrupted() -> None:
    # No ctypes (and no __pypy__.thread): the import works, async_raise() says why not.
    script = textwrap.dedent(
        """
        import sys, threading
        for name in ("ctypes", "__pypy__.thread"):  # __pypy__ itself: decimal needs it
            sys.modules[name] = None
        import watchdog_timeout
        from watchdog_timeout import _async_raise
        assert _async_raise.send_async_exc is None, "a binding was loaded"
        assert not _async_raise.can_clear()
        release = threading.Event()
        thread = threading.Thread(target=release.wait)
        thread.start()
        try:
            watchdog_timeout.async_raise(thread, SystemExit)
        except RuntimeError as exc:
            print(exc)
        else:
            raise AssertionError("no RuntimeError")
        finally:
            release.set()
            thread.join()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert sys.implementation.name in done.stdout
    assert sys.version.split()[0] in done.stdout


def test_can_clear_on_cpython_only() -> None:
    assert can_clear() is CPYTHON
    assert (withdraw_async_exc is not None) is CPYTHON
    assert send_async_exc is not None


# --- clearing: the binding matters --------------------------------------------------


def _sleeper(seconds: float) -> Callable[[Worker], None]:
    def body(worker: Worker) -> None:
        worker.ready.set()
        time.sleep(seconds)  # in a worker: the queued exception waits for the return
        _spin(0.05, threading.Event())  # bytecode: a still-queued exception lands here

    return body


@needs_pythonapi
def test_clearing_with_py_object_argtypes_queues_none_and_kills_the_target(spawn: Spawn) -> None:
    wrong = ctypes.pythonapi["PyThreadState_SetAsyncExc"]  # a function object of our own
    wrong.argtypes = (ctypes.c_ulong, ctypes.py_object)
    wrong.restype = ctypes.c_int
    worker = spawn(_sleeper(0.3))
    ident = worker.ident
    assert wrong(ident, _Stop) == 1
    assert wrong(ident, None) == 1  # "clear": but None is Py_None, not NULL
    worker.join()
    # Measured on CPython 3.9 to 3.13: the same SystemError everywhere.
    assert type(worker.caught) is SystemError
    assert "None is not a BaseException subclass" in str(worker.caught)
    assert not worker.finished


@needs_pythonapi
@pytest.mark.parametrize("how", ["withdraw_async_exc", "clear_async_exc"])
def test_package_withdrawal_really_withdraws(how: str, spawn: Spawn) -> None:
    worker = spawn(_sleeper(0.3))
    ident = worker.ident
    async_raise(worker.thread, _Stop)
    if how == "withdraw_async_exc":
        assert withdraw_async_exc is not None
        assert withdraw_async_exc(ident, None) == 1
    else:
        clear_async_exc(ident)
    worker.join()
    assert worker.caught is None
    assert worker.finished


@needs_pythonapi
def test_package_send_binding_raises_in_the_target(spawn: Spawn) -> None:
    assert send_async_exc is not None
    worker = spawn(_sleeper(0.1))
    assert send_async_exc(worker.ident, _Stop) == 1
    worker.join()
    assert type(worker.caught) is _Stop


def test_clear_async_exc_of_an_idle_thread_is_harmless(idle: Worker) -> None:
    clear_async_exc(idle.ident)
    clear_async_exc(_unknown_ident())


def test_async_raise_is_exported() -> None:
    assert watchdog_timeout.async_raise is async_raise
    assert watchdog_timeout.stop_thread is stop_thread


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="ctypes.pythonapi")
def test_other_libraries_can_still_call_the_c_api_their_way() -> None:
    # stopit, func-timeout and the classic recipe call the cached
    # pythonapi.PyThreadState_SetAsyncExc with a c_long: importing this package
    # must not have declared argtypes on that shared object.
    class Recipe(Exception):
        pass

    caught = []

    def busy() -> None:  # a loop in a callee: 3.13 lets an exception raised on
        end = time.monotonic() + 5  # the back-edge of a loop written directly in a
        while time.monotonic() < end:  # try escape it (python/cpython#130279)
            pass

    def target() -> None:
        try:
            busy()
        except Recipe:
            caught.append(True)

    thread = threading.Thread(target=target)
    thread.start()
    assert thread.ident is not None
    found = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_long(thread.ident), ctypes.py_object(Recipe)
    )
    thread.join(5)
    assert found == 1
    assert caught == [True]


@needs_pythonapi
@pytest.mark.parametrize(
    ("half_run", "source"), [("ctypes", "__init__.py"), ("ctypes._endian", "_endian.py")]
)
def test_a_half_run_ctypes_left_by_a_ctrl_c_is_imported_afresh(half_run: str, source: str) -> None:
    # A Ctrl-C in importlib's cleanup of the library's first (lazy) import of ctypes
    # can leave a half-run module in sys.modules (seen in a SIGINT storm on 3.9): every
    # later deadline in another thread then failed with "offers no way to raise".
    script = textwrap.dedent(
        f"""
        import importlib.util, os, sys, threading
        package = os.path.dirname(importlib.util.find_spec("ctypes").origin)
        path = os.path.join(package, {source!r})
        spec = importlib.util.spec_from_file_location({half_run!r}, path)
        sys.modules[{half_run!r}] = importlib.util.module_from_spec(spec)  # never run
        import watchdog_timeout
        from watchdog_timeout import TimeoutExpired, deadline
        caught = []
        def limited():
            try:
                with deadline(0.05):
                    while True:
                        pass
            except TimeoutExpired:
                caught.append(True)
        thread = threading.Thread(target=limited, daemon=True)
        thread.start()
        thread.join(10)
        print("interrupted" if caught else "not interrupted")
        """
    )
    done = run_python(script)
    assert done.stdout.strip() == "interrupted", done.stderr
