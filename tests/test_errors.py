"""The exceptions: TimeoutExpired, ProcessCrashed, and the injected _Interrupt.

TimeoutExpired is a TimeoutError with ``seconds``/``elapsed``/``name``/``stopped`` and a
one-sentence message; it pickles (also the private _LateTimeoutExpired, which must look
and unpickle as the public class). ProcessCrashed names the signal or the exit code.
_Interrupt is a BaseException that ``except Exception:`` cannot swallow, tagged with the
scope that sent it, or with what the delivery hook says when the interpreter builds it.
"""

from __future__ import annotations

import copy
import pickle
import signal
import traceback

import pytest

import watchdog_timeout
from watchdog_timeout import _errors
from watchdog_timeout._errors import (
    ProcessCrashed,
    TimeoutExpired,
    _Interrupt,
    _LateTimeoutExpired,
)

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


def _late(
    seconds: float | None = 0.2, *, elapsed: float = 0.25, name: str = "f()", stopped: bool = True
) -> TimeoutExpired:
    late = _LateTimeoutExpired(seconds, elapsed=elapsed, name=name, stopped=stopped)
    assert isinstance(late, TimeoutExpired)
    return late


def _attributes(exc: TimeoutExpired) -> tuple[object, ...]:
    return (exc.seconds, exc.elapsed, exc.name, exc.stopped, exc.args, str(exc))


# --- TimeoutExpired -------------------------------------------------------------


def test_timeout_expired_is_a_timeout_error_and_an_exception() -> None:
    assert issubclass(TimeoutExpired, TimeoutError)
    assert issubclass(TimeoutExpired, Exception)
    assert watchdog_timeout.TimeoutExpired is TimeoutExpired
    with pytest.raises(TimeoutError):
        raise TimeoutExpired(0.2)


def test_timeout_expired_attributes() -> None:
    exc = TimeoutExpired(0.2, elapsed=0.31, name="f()", stopped=False)
    assert exc.seconds == 0.2
    assert exc.elapsed == 0.31
    assert exc.name == "f"  # the message has the ()
    assert exc.stopped is False


def test_timeout_expired_defaults() -> None:
    exc = TimeoutExpired(1.5)
    assert (exc.seconds, exc.elapsed, exc.name, exc.stopped) == (1.5, 0.0, "deadline", True)
    assert str(exc) == "deadline() exceeded its time limit of 1.5 seconds"


def test_timeout_expired_message_names_the_name_and_the_limit() -> None:
    exc = TimeoutExpired(0.2, elapsed=0.25, name="f()")
    assert str(exc) == "f() exceeded its time limit of 0.2 seconds"
    assert exc.args == (str(exc),)


def test_timeout_expired_message_says_when_it_could_not_be_stopped() -> None:
    exc = TimeoutExpired(0.2, elapsed=0.25, name="f()", stopped=False)
    message = str(exc)
    assert message.startswith("f() exceeded its time limit of 0.2 seconds and ")
    assert "could not be stopped" in message
    assert message.count(".") == 1  # one sentence: only the decimal point
    assert exc.args == (message,)


@pytest.mark.parametrize("seconds", [0.0, 0.1 + 0.2, 2, 30.0])
def test_timeout_expired_message_shows_the_limit_briefly(seconds: float) -> None:
    assert f"limit of {seconds:g} seconds" in str(TimeoutExpired(seconds))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stopped", [True, False])
def test_timeout_expired_pickle_round_trips(protocol: int, stopped: bool) -> None:
    exc = TimeoutExpired(0.2, elapsed=0.25, name="f()", stopped=stopped)
    clone = pickle.loads(pickle.dumps(exc, protocol))
    assert type(clone) is TimeoutExpired
    assert _attributes(clone) == _attributes(exc)


def test_timeout_expired_copies() -> None:
    exc = TimeoutExpired(0.2, elapsed=0.25, name="f()", stopped=False)
    for clone in (copy.copy(exc), copy.deepcopy(exc)):
        assert type(clone) is TimeoutExpired
        assert _attributes(clone) == _attributes(exc)


# --- _LateTimeoutExpired: a TimeoutExpired that must look like one ------------------


def test_late_timeout_expired_looks_public() -> None:
    assert _LateTimeoutExpired.__name__ == "TimeoutExpired"
    assert _LateTimeoutExpired.__qualname__ == "TimeoutExpired"
    assert _LateTimeoutExpired.__module__ == "watchdog_timeout"
    late = _late()
    assert repr(late).startswith("TimeoutExpired(")
    assert traceback.format_exception_only(type(late), late) == [
        "watchdog_timeout.TimeoutExpired: f() exceeded its time limit of 0.2 seconds\n"
    ]


def test_late_timeout_expired_has_the_attributes_and_message() -> None:
    late = _late(0.2, elapsed=0.3, name="g()", stopped=False)
    assert (late.seconds, late.elapsed, late.name, late.stopped) == (0.2, 0.3, "g", False)
    expected = str(TimeoutExpired(0.2, name="g()", stopped=False))
    assert str(late) == expected
    assert late.args == (expected,)
    assert isinstance(late, _Interrupt)
    assert late.scope is None


@pytest.mark.parametrize(
    "interpreter_args",
    [(), ("asynchronous exception triggered from another thread",)],
    ids=["cpython", "pypy"],
)
def test_late_timeout_expired_survives_the_interpreters_second_init(
    interpreter_args: tuple[str, ...],
) -> None:
    # The interpreter calls __init__ again on what _Interrupt.__new__ returned.
    late = _late(0.2, elapsed=0.3, name="g()")
    late.__init__(*interpreter_args)  # type: ignore[misc]
    assert (late.seconds, late.elapsed, late.name) == (0.2, 0.3, "g")
    assert str(late) == str(TimeoutExpired(0.2, name="g()"))


def test_late_timeout_expired_is_caught_as_timeout_expired() -> None:
    caught: list[TimeoutExpired] = []
    late = _late()
    try:
        raise late
    except TimeoutExpired as exc:
        caught.append(exc)
    assert caught == [late]
    with pytest.raises(TimeoutError):
        raise _late()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_late_timeout_expired_unpickles_as_the_public_class(protocol: int) -> None:
    late = _late(0.2, elapsed=0.3, name="g()", stopped=False)
    clone = pickle.loads(pickle.dumps(late, protocol))
    assert type(clone) is TimeoutExpired
    assert _attributes(clone) == _attributes(late)
    with pytest.raises(TimeoutExpired):
        raise clone


# --- ProcessCrashed ---------------------------------------------------------------


def test_process_crashed_is_a_runtime_error() -> None:
    assert issubclass(ProcessCrashed, RuntimeError)
    assert watchdog_timeout.ProcessCrashed is ProcessCrashed


def test_process_crashed_message_for_a_signal() -> None:
    exc = ProcessCrashed("f()", exitcode=-int(signal.SIGSEGV), pid=1234)
    assert (exc.name, exc.pid, exc.exitcode, exc.signal) == ("f()", 1234, -11, "SIGSEGV")
    message = str(exc)
    assert "f()" in message
    assert "1234" in message
    assert "SIGSEGV" in message
    assert "11" in message
    assert exc.args == (message,)


def test_process_crashed_message_for_an_exit_code() -> None:
    exc = ProcessCrashed("f()", exitcode=3)
    assert (exc.name, exc.pid, exc.exitcode, exc.signal) == ("f()", None, 3, None)
    message = str(exc)
    assert "f()" in message
    assert "exited with code 3" in message
    assert "signal" not in message


def test_process_crashed_message_for_an_unknown_signal() -> None:
    exc = ProcessCrashed("f()", exitcode=-200)
    assert exc.signal == "signal 200"
    assert "200" in str(exc)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("exitcode", "pid"), [(-9, 1234), (1, None), (0, 5)])
def test_process_crashed_pickle_round_trips(protocol: int, exitcode: int, pid: int | None) -> None:
    exc = ProcessCrashed("f()", exitcode=exitcode, pid=pid)
    clone = pickle.loads(pickle.dumps(exc, protocol))
    assert type(clone) is ProcessCrashed
    fields = (clone.name, clone.pid, clone.exitcode, clone.signal)
    assert fields == ("f()", pid, exitcode, exc.signal)
    assert str(clone) == str(exc)
    assert clone.args == exc.args


# --- _Interrupt ---------------------------------------------------------------------


def test_interrupt_is_a_base_exception_but_not_an_exception() -> None:
    assert issubclass(_Interrupt, BaseException)
    assert not issubclass(_Interrupt, Exception)


def test_interrupt_passes_except_exception() -> None:
    swallowed: list[BaseException] = []

    def user_code() -> None:
        try:
            raise _Interrupt(scope="mine")
        except Exception as exc:  # what user code does; it must not catch the interrupt
            swallowed.append(exc)

    with pytest.raises(_Interrupt):
        user_code()
    assert swallowed == []


def test_interrupt_scope_keyword_tags_it() -> None:
    scope = object()
    assert _Interrupt(scope=scope).scope is scope
    assert _Interrupt(scope=None).scope is None


def test_interrupt_scope_keyword_skips_the_delivery_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[None] = []

    def hook() -> object:
        calls.append(None)
        return "from the hook"

    monkeypatch.setattr(_errors, "_delivery_hook", hook)
    scope = object()
    assert _Interrupt(scope=scope).scope is scope
    assert calls == []


def test_interrupt_built_by_the_interpreter_asks_the_installed_hook() -> None:
    # Importing the package installs the delivery hook; with no scope expiring in
    # this thread it tags nothing.
    assert _errors._delivery_hook is not None
    assert _Interrupt().scope is None
    with pytest.raises(_Interrupt) as info:
        raise _Interrupt  # the class: the interpreter builds it without arguments
    assert info.value.scope is None


def test_interrupt_gets_the_scope_the_hook_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    scope = object()
    monkeypatch.setattr(_errors, "_delivery_hook", lambda: scope)
    assert _Interrupt().scope is scope
    assert _Interrupt("a message").scope is scope  # as PyPy builds it
    with pytest.raises(_Interrupt) as info:
        raise _Interrupt
    assert info.value.scope is scope


def test_interrupt_is_replaced_by_the_exception_the_hook_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    late = _late(0.2, elapsed=0.3, name="g()")
    monkeypatch.setattr(_errors, "_delivery_hook", lambda: late)
    built: object = _Interrupt()
    assert built is late
    assert (late.seconds, late.elapsed, late.name, late.stopped) == (0.2, 0.3, "g", True)
    assert str(late) == "g() exceeded its time limit of 0.2 seconds"
    with pytest.raises(TimeoutExpired) as info:
        raise _Interrupt
    assert info.value is late


def test_interrupt_without_hook_has_no_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_errors, "_delivery_hook", None)
    assert _Interrupt().scope is None


def test_interrupt_subclass_does_not_ask_the_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[None] = []

    def hook() -> object:
        calls.append(None)
        return None

    monkeypatch.setattr(_errors, "_delivery_hook", hook)
    _late()
    assert calls == []


def test_interrupt_message_names_its_scope() -> None:
    assert "'the scope'" in str(_Interrupt(scope="the scope"))


def test_timeout_expired_builds_like_any_exception() -> None:
    bare = TimeoutExpired()
    assert (bare.args, str(bare), bare.seconds) == ((), "", None)
    with_message = TimeoutExpired("the backend took too long")
    assert with_message.args == ("the backend took too long",)
    assert str(with_message) == "the backend took too long"
    assert with_message.seconds is None
    assert pickle.loads(pickle.dumps(with_message)).args == with_message.args


def test_timeout_expired_says_how_long_a_block_that_overran_by_far_ran() -> None:
    assert "ran for" not in str(TimeoutExpired(1.0, elapsed=1.2))
    assert str(TimeoutExpired(0.1, elapsed=8.44, name="f()")) == (
        "f() exceeded its time limit of 0.1 seconds (it ran for 8.44 seconds)"
    )
