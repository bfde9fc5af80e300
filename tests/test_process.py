"""``isolation="process"``: ``call_in_process`` end to end, with real child processes.

"Gone" is checked through the child's pid in /proc: no entry (reaped), or, for a
grandchild orphaned to an init that does not reap, a zombie.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import _process_targets as targets
import pytest
from helpers import assert_takes_about, run_in_thread

from watchdog_timeout import (
    ProcessCrashed,
    TimeoutExpired,
    _process,
    _process_child,
    _process_pack,
    _process_pool,
    _process_traceback,
    deadline,
)
from watchdog_timeout._process import call_in_process
from watchdog_timeout._process_tree import stop_tree

LINUX = sys.platform.startswith("linux")
pytestmark = pytest.mark.skipif(not LINUX, reason="checks processes through /proc")


def call(
    function: Callable[..., Any],
    *args: Any,
    seconds: float | None = 10.0,
    grace: float = 1.0,
    start_method: str | None = None,
    **kwargs: Any,
) -> Any:
    name = f"{getattr(function, '__name__', 'call')}()"
    return call_in_process(
        function,
        args,
        kwargs,
        seconds=seconds,
        grace=grace,
        name=name,
        start_method=start_method,
    )


def state_of(pid: int) -> str | None:
    """The process's state letter from /proc, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except FileNotFoundError:
        return None
    return data[data.rindex(b")") + 2 :].split()[0].decode()


def wait_gone(pid: int, *, zombie_ok: bool = False, timeout: float = 3.0) -> bool:
    """Whether ``pid`` disappears (or only a zombie is left, with ``zombie_ok``) in time."""
    end = time.monotonic() + timeout
    while True:
        state = state_of(pid)
        if state is None or (zombie_ok and state in ("Z", "X")):
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.01)


def read_pid(path: Path, timeout: float = 5.0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = path.read_text() if path.exists() else ""
        if text.endswith("\n"):
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"no pid written to {path}")


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the children that calls were handed to, in order."""
    pids: list[int] = []
    monkeypatch.setattr(_process, "_dispatch_hook", pids.append)
    return pids


@pytest.fixture
def fresh_pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pools of the test's own, stopped at its end (for tests that change pool settings)."""
    monkeypatch.setattr(_process_pool, "_pools", {})
    yield
    for pool in _process_pool._pools.values():
        pool.close(2.0)


# --- results, reuse, references ------------------------------------------------------


def test_call_in_process_returns_the_result_from_another_process() -> None:
    assert call(targets.add, 2, b=3) == 5
    assert call(targets.pid) != os.getpid()


def test_call_in_process_without_a_limit_returns() -> None:
    assert call(targets.sleep_then_pid, 0.05, seconds=None) != os.getpid()


def test_call_in_process_reuses_a_warm_child() -> None:
    first = call(targets.pid)
    assert call(targets.pid) == first


def test_call_in_process_child_leads_its_own_process_group() -> None:
    child = call(targets.pid)
    assert call(os.getpgrp) == child  # a builtin travels by value


def test_call_in_process_finds_a_decorated_module_function_through_wrapped() -> None:
    # The module-level name is the wrapper; the child must find the original.
    assert call(targets.decorated_multiply.__wrapped__, 6, 7) == 42
    assert call(targets.decorated_pid.__wrapped__) != os.getpid()


def test_call_in_process_finds_decorated_methods() -> None:
    counter = targets.Counter(40)
    assert call(counter.add.__wrapped__, 2) == 42
    assert call(targets.Counter.double.__wrapped__, 21) == 42
    assert call(targets.Counter.name.__wrapped__) == "Counter"


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_call_in_process_works_with_each_start_method(start_method: str) -> None:
    assert call(targets.decorated_multiply.__wrapped__, 2, 3, start_method=start_method) == 6


def test_call_in_process_fork_runs_lambdas_and_closures() -> None:
    lock = threading.Lock()  # unpicklable, but inherited by fork
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        assert call(lambda: 7, start_method="fork") == 7
        assert call(lambda held: held.locked(), lock, start_method="fork") is False


def test_call_in_process_rejects_an_unknown_start_method() -> None:
    with pytest.raises(ValueError, match="`start_method` must be"):
        call(targets.add, 1, start_method="thread")


# --- what cannot travel ---------------------------------------------------------------


def _by_value_callables() -> dict[str, Callable[[int], int]]:
    """A lambda, a closure and a local class's method: none can be found by name."""
    base = 40

    def closure(n: int) -> int:
        return base + n

    class Local:
        def __init__(self, start: int) -> None:
            self.start = start

        def add(self, n: int) -> int:
            return self.start + n

    return {"lambda": lambda n: base + n, "closure": closure, "method": Local(base).add}


@pytest.mark.parametrize("kind", ["lambda", "closure", "method"])
@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_call_in_process_runs_what_cannot_be_found_by_name(kind: str, start_method: str) -> None:
    function = _by_value_callables()[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        assert call(function, 2, start_method=start_method) == 42


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_call_in_process_local_classes_come_back_as_themselves(start_method: str) -> None:
    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

    class LocalError(Exception):
        pass

    def fail() -> None:
        raise LocalError("local")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        echoed = call(targets.echo, Point(3), start_method=start_method)
        made = call(lambda: Point(4), start_method=start_method)
        with pytest.raises(LocalError, match="local"):
            call(fail, start_method=start_method)
    assert type(echoed) is Point
    assert echoed.x == 3
    assert type(made) is Point


def test_call_in_process_names_what_a_closure_cannot_take_along(dispatched: list[int]) -> None:
    lock = threading.Lock()

    def uses_a_lock() -> bool:
        return lock.locked()

    with pytest.raises(TypeError, match=r"the variable `lock` that uses_a_lock\(\) closes over"):
        call(uses_a_lock)
    with pytest.raises(TypeError, match=r"function <lambda>\(\) itself.*_thread\.lock"):
        call_in_process(lambda held=lock: held, (), {}, seconds=1.0, grace=1.0, name="<lambda>()")
    assert dispatched == []  # refused before any child was used


def test_call_in_process_runs_a_function_of_an_interactive_main(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))

    def typed_at_the_prompt() -> int:
        return 1

    typed_at_the_prompt.__module__ = "__main__"
    typed_at_the_prompt.__qualname__ = "typed_at_the_prompt"
    assert call(typed_at_the_prompt) == 1


_SCRIPT = """
import sys
from watchdog_timeout import timeout

def loaded():
    return [name for name in ("multiprocessing", "cloudpickle") if name in sys.modules]

if __name__ == "__main__":
    print(loaded())  # import watchdog_timeout: neither

@timeout(5, isolation="process")
def add(a, b):
    return a + b

if __name__ == "__main__":
    print(add(40, 2), loaded())  # by reference: plain pickle

    @timeout(5, isolation="process")
    def under_the_guard(a):
        return a * 2

    base = 40
    print(under_the_guard(21), loaded())  # not in the child's import of this script
    # A closure that refers to a decorated global: the global travels by name.
    print(timeout(5, isolation="process")(lambda: add.__wrapped__(base, 2))())
"""


def test_call_in_process_script_by_reference_and_by_value(tmp_path: Path) -> None:
    script = tmp_path / "guarded.py"
    script.write_text(_SCRIPT)
    finished = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines() == [
        "[]",
        "42 ['multiprocessing']",
        "42 ['multiprocessing', 'cloudpickle']",
        "42",
    ]


def test_call_in_process_names_an_unpicklable_argument(dispatched: list[int]) -> None:
    with pytest.raises(TypeError, match=r"argument `value` of echo\(\).*_thread\.lock"):
        call(targets.echo, threading.Lock())
    with pytest.raises(TypeError, match=r"argument `b` of add\(\).*cannot be pickled"):
        call(targets.add, 1, b=threading.Lock())
    assert dispatched == []  # refused before any child was used


def test_call_in_process_names_an_unpicklable_result_and_keeps_the_child() -> None:
    child = call(targets.pid)
    with pytest.raises(TypeError, match=r"return_lock\(\) returned _thread\.lock"):
        call(targets.return_lock)
    assert call(targets.pid) == child


# --- exceptions --------------------------------------------------------------------


def test_call_in_process_reraises_with_the_function_frames() -> None:
    with pytest.raises(ValueError, match="boom") as caught:
        call(targets.raise_through, "boom")
    error = caught.value
    assert error.__cause__ is None  # nothing chained in the child: the frames say it all
    frames = traceback.extract_tb(error.__traceback__)
    assert [frame.name for frame in frames[-2:]] == ["raise_through", "raise_value_error"]
    assert frames[-1].filename == targets.__file__
    assert frames[-1].line == "raise ValueError(message)"
    assert frames[-2].line == "raise_value_error(message)"
    assert frames[0].name == test_call_in_process_reraises_with_the_function_frames.__name__
    # The stand-in frames look like the function's to tools that read frames.
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    assert tb is not None
    assert tb.tb_frame.f_code.co_name == "raise_value_error"
    assert tb.tb_frame.f_lineno == frames[-1].lineno
    assert tb.tb_frame.f_globals["__name__"] == "_process_targets"
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    assert "in raise_value_error\n    raise ValueError(message)\n" in text


def test_call_in_process_keeps_the_traceback_as_text_if_frames_cannot_be_rebuilt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object) -> None:
        raise ValueError("no frame here")

    monkeypatch.setattr(_process_traceback, "_stand_in", refuse)
    with pytest.raises(ValueError, match="boom") as caught:
        call(targets.raise_value_error, "boom")
    cause = caught.value.__cause__
    assert isinstance(cause, _process_child._ChildTraceback)
    assert "raise ValueError(message)" in cause.text


def test_call_in_process_keeps_the_child_chain_as_text() -> None:
    with pytest.raises(ValueError, match="wrapped") as caught:
        call(targets.raise_chained)
    cause = caught.value.__cause__
    assert isinstance(cause, _process_child._ChildTraceback)
    assert "KeyError: 'missing'" in cause.text
    assert 'raise ValueError("wrapped") from exc' in cause.text
    assert traceback.extract_tb(caught.value.__traceback__)[-1].name == "raise_chained"


@pytest.mark.parametrize(
    ("function", "why"),
    [
        (targets.raise_unrebuildable, "cannot be rebuilt in this process"),
        (targets.raise_unpicklable, "(?i)can(no|')t pickle"),  # CPython's, PyPy's words
    ],
)
def test_call_in_process_reports_an_exception_that_cannot_travel(
    function: Callable[[], None], why: str
) -> None:
    with pytest.raises(RuntimeError, match=why) as caught:
        call(function)
    assert "_process_targets." in str(caught.value)  # the original type, by name
    assert isinstance(caught.value.__cause__, _process_child._ChildTraceback)


def test_call_in_process_answers_once_when_the_function_forks() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        child = call(targets.fork_and_return_pid)
    assert call(targets.pid) == child  # no second answer waiting in the socket


def test_call_in_process_after_os_fork_uses_children_of_its_own() -> None:
    parent_child = call(targets.pid)
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        forked = os.fork()
    if forked == 0:  # pragma: no cover (the forked copy of the test process)
        code = 1
        try:
            mine = call(targets.pid)
            os.write(write_end, f"{mine}\n".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        mine = int(stream.read() or "0")
    _, status = os.waitpid(forked, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert mine not in (0, parent_child, forked)
    assert call(targets.pid) == parent_child  # the parent's pool is untouched


def test_call_in_process_works_in_a_daemonic_pool_worker() -> None:
    context = multiprocessing.get_context("forkserver")
    with context.Pool(1) as pool:
        worker, child = pool.apply(targets.pid_from_a_nested_child)
        pool.close()
        pool.join()
    assert child not in (worker, os.getpid())


def test_call_in_process_child_drops_the_parent_signal_handlers() -> None:
    def handler(signum: int, frame: object) -> None:
        raise AssertionError("the parent's handler ran")

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            inherited = call(lambda: signal.getsignal(signal.SIGUSR1), start_method="fork")
        assert inherited == signal.SIG_DFL
        assert call(targets.sigusr1_handler) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_call_in_process_child_ignores_sigint() -> None:
    assert call(targets.send_sigint_to_self_then_pid) != os.getpid()


# --- timeouts and the process tree ----------------------------------------------------


@pytest.mark.parametrize("function", [targets.wait_forever, targets.sleep])
def test_call_in_process_stops_a_c_level_wait(
    function: Callable[..., None], dispatched: list[int]
) -> None:
    args = (60.0,) if function is targets.sleep else ()
    with pytest.raises(TimeoutExpired) as caught, assert_takes_about(0.2):
        call(function, *args, seconds=0.2)
    assert caught.value.stopped is True
    assert caught.value.seconds == 0.2
    assert 0.2 <= caught.value.elapsed < 1.0
    assert wait_gone(dispatched[-1])


def test_call_in_process_kills_grandchildren(tmp_path: Path, dispatched: list[int]) -> None:
    pid_file = tmp_path / "grandchild"
    with pytest.raises(TimeoutExpired):
        call(targets.spawn_sleep_and_wait, str(pid_file), seconds=0.5)
    assert wait_gone(dispatched[-1])
    assert wait_gone(read_pid(pid_file), zombie_ok=True)


def test_call_in_process_kills_grandchildren_that_left_the_group(
    tmp_path: Path, dispatched: list[int]
) -> None:
    pid_file = tmp_path / "grandchild"
    with pytest.raises(TimeoutExpired):
        call(targets.spawn_session_sleep_and_wait, str(pid_file), seconds=0.5)
    assert wait_gone(dispatched[-1])
    assert wait_gone(read_pid(pid_file), zombie_ok=True)


@pytest.mark.parametrize("start_method", ["forkserver", "fork"])
def test_call_in_process_kills_an_orphan_in_a_session_of_its_own(
    tmp_path: Path, dispatched: list[int], start_method: str
) -> None:
    pid_file = tmp_path / "orphan"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        with pytest.raises(TimeoutExpired):
            call(
                targets.shell_setsid_sleep_and_wait,
                str(pid_file),
                seconds=0.5,
                start_method=start_method,
            )
    orphan = read_pid(pid_file)
    assert wait_gone(dispatched[-1])
    assert wait_gone(orphan, zombie_ok=True)


def test_call_in_process_child_adopts_and_reaps_orphans(dispatched: list[int]) -> None:
    orphan = call(targets.shell_setsid_sleep, 0.2)
    child = dispatched[-1]
    assert call(targets.parent_of, orphan) == child  # adopted: still in the child's tree
    end = time.monotonic() + 5.0
    while state_of(orphan) is not None and time.monotonic() < end:
        time.sleep(0.1)
        call(targets.pid)  # the child reaps after a call
    assert dispatched[-1] == child
    assert state_of(orphan) is None  # reaped, not left a zombie


def test_call_in_process_kills_a_child_that_ignores_sigterm(dispatched: list[int]) -> None:
    with pytest.raises(TimeoutExpired) as caught, assert_takes_about(0.5):
        call(targets.ignore_sigterm_and_sleep, 60.0, seconds=0.2, grace=0.3)
    assert caught.value.stopped is True
    assert wait_gone(dispatched[-1])


def test_call_in_process_reports_a_child_that_outlived_sigkill(
    monkeypatch: pytest.MonkeyPatch, dispatched: list[int]
) -> None:
    def stuck_in_the_kernel(process: Any, grace: float) -> bool:
        stop_tree(process, grace)
        return False  # as for a process in D state

    # _finish looks it up in _process_pool.
    monkeypatch.setattr(_process_pool, "stop_tree", stuck_in_the_kernel)
    with pytest.raises(TimeoutExpired, match="could not be stopped") as caught:
        call(targets.wait_forever, seconds=0.1)
    assert caught.value.stopped is False
    assert wait_gone(dispatched[-1])


def test_call_in_process_200_timeouts_leave_no_process(dispatched: list[int]) -> None:
    for _ in range(200):
        with pytest.raises(TimeoutExpired):
            call(time.sleep, 60.0, seconds=0.005, grace=0.5)  # a builtin: nothing to import
    assert len(set(dispatched)) == 200
    left = [pid for pid in dispatched if not wait_gone(pid, timeout=0.5)]
    assert left == []


def test_call_in_process_replaces_a_killed_child(dispatched: list[int]) -> None:
    with pytest.raises(TimeoutExpired):
        call(targets.wait_forever, seconds=0.05)
    killed = dispatched[-1]
    assert call(targets.pid) not in (killed, os.getpid())


def test_call_in_process_spawn_timeout_reaps_the_child(dispatched: list[int]) -> None:
    with pytest.raises(TimeoutExpired):
        call(targets.wait_forever, seconds=0.2, start_method="spawn")
    assert wait_gone(dispatched[-1])  # our own child: reaped, not a zombie


def test_call_in_process_fork_timeout_reaps_the_child(dispatched: list[int]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(TimeoutExpired):
            call(lambda: threading.Event().wait(), seconds=0.2, start_method="fork")
    assert wait_gone(dispatched[-1])


# --- crashes ----------------------------------------------------------------------


def test_call_in_process_reports_a_segfault_as_a_crash(dispatched: list[int]) -> None:
    with pytest.raises(ProcessCrashed) as caught:
        call(targets.segfault)
    assert not isinstance(caught.value, TimeoutError)
    assert caught.value.signal == "SIGSEGV"
    assert caught.value.exitcode == -signal.SIGSEGV
    assert caught.value.pid == dispatched[-1]
    assert "SIGSEGV" in str(caught.value)
    assert wait_gone(dispatched[-1])


def test_call_in_process_reports_a_kill_from_elsewhere(dispatched: list[int]) -> None:
    def kill_it(child: int) -> None:
        dispatched.append(child)
        threading.Timer(0.1, os.kill, (child, signal.SIGKILL)).start()

    _process._dispatch_hook = kill_it  # the fixture puts the original back
    with pytest.raises(ProcessCrashed) as caught:
        call(targets.wait_forever)
    crashed = caught.value
    assert (crashed.pid, crashed.exitcode, crashed.signal) == (dispatched[-1], -9, "SIGKILL")
    assert f"process {dispatched[-1]} running wait_forever() was killed by SIGKILL" in str(crashed)


def test_call_in_process_reports_an_exit_code_as_a_crash(dispatched: list[int]) -> None:
    with pytest.raises(ProcessCrashed) as caught:
        call(targets.exit_hard, 3)
    crashed = caught.value
    assert (crashed.pid, crashed.exitcode, crashed.signal) == (dispatched[-1], 3, None)
    assert "exited with code 3" in str(crashed)


@pytest.mark.usefixtures("fresh_pools")
def test_call_in_process_forgets_crashed_children() -> None:
    for _ in range(3):
        with pytest.raises(ProcessCrashed):
            call(targets.exit_hard, 3)
    pool = _process_pool._pool_for("forkserver")
    assert all(worker.state is not _process_pool._DEAD for worker in pool._workers)
    assert all(repr(worker) for worker in pool._retired)  # a closed process still shows


# --- outer deadlines, Ctrl-C, nesting ------------------------------------------------


def test_call_in_process_outer_deadline_wins_in_the_main_thread(dispatched: list[int]) -> None:
    with pytest.raises(TimeoutExpired) as caught, assert_takes_about(0.3), deadline(0.3):
        call(targets.wait_forever, seconds=30.0)
    assert caught.value.name == "deadline"
    assert wait_gone(dispatched[-1])


def test_call_in_process_outer_deadline_wins_in_another_thread(dispatched: list[int]) -> None:
    def limited() -> None:
        with deadline(0.3, label="outer"):
            call(targets.wait_forever, seconds=30.0)

    with pytest.raises(TimeoutExpired) as caught, assert_takes_about(0.3):
        run_in_thread(limited)
    assert caught.value.name == "outer"
    assert wait_gone(dispatched[-1])


@pytest.mark.usefixtures("ctrl_c_raises")
def test_call_in_process_ctrl_c_stops_the_child(dispatched: list[int]) -> None:
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt), assert_takes_about(0.3):
            call(targets.wait_forever, seconds=30.0)
    finally:
        timer.cancel()
        timer.join()
    assert wait_gone(dispatched[-1])


@pytest.mark.usefixtures("ctrl_c_raises")
def test_call_in_process_ctrl_c_during_the_kill_still_kills(dispatched: list[int]) -> None:
    # The child ignores SIGTERM: after the deadline (0.3 s) the kill waits `grace`
    # (3 s) before SIGKILL, and Ctrl-C arrives in that wait.
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            call(targets.ignore_sigterm_and_sleep, 30.0, seconds=0.3, grace=3.0)
    finally:
        timer.cancel()
        timer.join()
    assert wait_gone(dispatched[-1])


def test_call_in_process_nests_and_reports_the_inner_timeout() -> None:
    grandchild, outcome = call(targets.nested, 30.0, 0.3, seconds=20.0)
    assert outcome == "TimeoutExpired"
    assert wait_gone(grandchild, zombie_ok=True)
    assert call(targets.nested, 0.0, 10.0, seconds=20.0)[1] == "ok"


def test_call_in_process_outer_timeout_kills_the_nested_tree(
    tmp_path: Path, dispatched: list[int]
) -> None:
    pid_file = tmp_path / "grandchild"
    with pytest.raises(TimeoutExpired):
        call(targets.nested, 60.0, 30.0, str(pid_file), seconds=2.0)
    assert wait_gone(dispatched[-1])
    assert wait_gone(read_pid(pid_file), zombie_ok=True)


# --- the pool ---------------------------------------------------------------------


def test_call_in_process_serves_many_threads() -> None:
    def work(base: int) -> list[int]:
        return [call(targets.add, base, b=i) for i in range(10)]

    results: dict[int, list[int]] = {}
    threads = [
        threading.Thread(target=lambda b=b: results.__setitem__(b, work(b))) for b in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {b: [b + i for i in range(10)] for b in range(4)}
    assert len(_process_pool._pool_for("forkserver")._idle) <= _process_pool.MAX_IDLE


@pytest.mark.usefixtures("fresh_pools")
def test_call_in_process_idle_child_retires(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_process_pool, "IDLE_TIMEOUT", 0.2)
    first = call(targets.pid)
    time.sleep(0.5)
    assert wait_gone(first)
    assert call(targets.pid) not in (first, os.getpid())


@pytest.mark.usefixtures("fresh_pools")
def test_call_in_process_retries_a_call_sent_to_a_retiring_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_process_pool, "IDLE_TIMEOUT", 0.2)
    call(targets.pid)
    pool = _process_pool._pool_for("forkserver")
    worker = pool._idle[-1]
    time.sleep(0.5)  # it said goodbye; acquire() would notice, so hand it the call directly
    payload = _process_pack.pack_call(targets.pid, (), {}, "pid()", "forkserver")
    worker.state = _process_pool._BUSY
    assert _process._run(pool, worker, payload, seconds=5.0, grace=1.0, name="pid()") is None
    pool.forget(worker)


# --- interpreter exit ----------------------------------------------------------------

_EXIT_SCRIPT = """
import os, sys, threading, time
from watchdog_timeout import _process

def wait_forever():
    threading.Event().wait()

def main():
    pids = []
    _process._dispatch_hook = pids.append
    print(_process.call_in_process(os.getpid, (), {{}}, seconds=5, grace=1, name="getpid()"))
    busy = threading.Thread(
        target=_process.call_in_process,
        args=(wait_forever, (), {{}}),
        kwargs=dict(seconds=60, grace=1, name="wait_forever()"),
        daemon=True,
    )
    busy.start()
    while len(pids) < 2:
        time.sleep(0.01)
    print(pids[1], flush=True)
    {ending}

if __name__ == "__main__":
    main()
"""


def run_script(tmp_path: Path, ending: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(_EXIT_SCRIPT.format(ending=ending)))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, check=False
    )


def test_call_in_process_exit_leaves_no_child_and_no_traceback(tmp_path: Path) -> None:
    started = time.monotonic()
    finished = run_script(tmp_path, "time.sleep(0.2)")
    assert time.monotonic() - started < 10
    assert finished.returncode == 0, finished.stderr
    assert finished.stderr == ""
    idle, busy = (int(line) for line in finished.stdout.split())
    assert wait_gone(idle)
    assert wait_gone(busy)


def test_call_in_process_unguarded_script_says_so_first(tmp_path: Path) -> None:
    start_method = "forkserver"  # spawn takes the same path (the child's bootstrap)
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import os\n"
        "from watchdog_timeout._process import call_in_process\n"
        "print(call_in_process(os.getpid, (), {}, seconds=5, grace=1, name='getpid()',\n"
        f"    start_method={start_method!r}))\n"
    )
    finished = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert finished.returncode == 1
    lines = finished.stderr.splitlines()
    assert lines[-1].startswith(
        'RuntimeError: unguarded.py needs `if __name__ == "__main__":` around the code '
        "that calls getpid()"
    )
    assert f"started by {start_method!r} imports the main module again" in lines[-1]
    assert finished.stderr.count("Traceback") == 1  # ours, short; none from the child
    assert len(lines) < 15
    assert "ProcessCrashed" not in finished.stderr


def test_call_in_process_parent_killed_takes_the_child_along(tmp_path: Path) -> None:
    finished = run_script(tmp_path, "os.kill(os.getpid(), 9)")
    assert finished.returncode == -signal.SIGKILL
    busy = int(finished.stdout.split()[1])
    assert wait_gone(busy, zombie_ok=True, timeout=5.0)
