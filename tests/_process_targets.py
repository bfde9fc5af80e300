"""Module-level functions for test_process: a child process finds them by reference.

Kept light (no pytest import), because every child started by ``spawn`` or
``forkserver`` imports this module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Any, Callable

import wrapt

from watchdog_timeout._process import call_in_process


def add(a: int, b: int = 0) -> int:
    return a + b


def pid() -> int:
    return os.getpid()


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def wait_forever() -> None:
    threading.Event().wait()


def sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def spawn_sleep_and_wait(pid_file: str) -> None:
    """Start a ``sleep`` subprocess, record its pid, and wait forever."""
    child = subprocess.Popen(["sleep", "60"])
    with open(pid_file, "w") as stream:
        stream.write(f"{child.pid}\n")
    child.wait()


def spawn_session_sleep_and_wait(pid_file: str) -> None:
    """Like spawn_sleep_and_wait, but the grandchild leaves the group (setsid)."""
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    with open(pid_file, "w") as stream:
        stream.write(f"{child.pid}\n")
    child.wait()


def shell_setsid_sleep_and_wait(pid_file: str) -> None:
    """A shell starts ``setsid sleep 60 &`` and exits: the sleep is an orphan in its own session."""
    subprocess.run(["sh", "-c", f'setsid sleep 60 & echo $! > "{pid_file}"'], check=True)
    threading.Event().wait()


def shell_setsid_sleep(seconds: float) -> int:
    """A shell starts ``setsid sleep <seconds> &`` and exits; returns the orphan's pid."""
    shell = subprocess.run(
        ["sh", "-c", f"setsid sleep {seconds} >/dev/null 2>&1 & echo $!"],
        check=True,
        capture_output=True,
    )
    return int(shell.stdout)


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        data = stat.read()
    return int(data[data.rindex(b")") + 2 :].split()[1])


def segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(10)


def exit_hard(code: int) -> None:
    os._exit(code)


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def raise_through(message: str) -> None:
    raise_value_error(message)


def raise_chained() -> None:
    empty: dict[str, int] = {}
    try:
        empty["missing"]
    except KeyError as exc:
        raise ValueError("wrapped") from exc


class NeedsTwoArguments(Exception):
    """An exception that pickles but cannot be rebuilt from its args."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first} {second}")


def raise_unrebuildable() -> None:
    raise NeedsTwoArguments("first", "second")


class HoldsALock(Exception):
    """An exception that cannot be pickled at all."""

    def __init__(self) -> None:
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def raise_unpicklable() -> None:
    raise HoldsALock


def return_lock() -> object:
    return threading.Lock()


def echo(value: object) -> object:
    return value


def ignore_sigterm_and_sleep(seconds: float) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(seconds)


def send_sigint_to_self_then_pid() -> int:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)
    return os.getpid()


def nested(inner: float, inner_limit: float, pid_file: str | None = None) -> tuple[int, str]:
    """Run ``sleep_then_pid(inner)`` in a grandchild with ``inner_limit``.

    Returns (grandchild pid or -1, "ok" or the inner error's class name). With
    ``pid_file``, the grandchild's pid is written there first.
    """
    seen: list[int] = []

    def remember(child: int) -> None:
        seen.append(child)
        if pid_file is not None:
            with open(pid_file, "w") as stream:
                stream.write(f"{child}\n")

    from watchdog_timeout import _process  # noqa: PLC0415

    _process._dispatch_hook = remember
    try:
        call_in_process(
            sleep_then_pid, (inner,), {}, seconds=inner_limit, grace=1.0, name="inner()"
        )
    except Exception as exc:
        return (seen[0] if seen else -1, type(exc).__name__)
    return (seen[0] if seen else -1, "ok")


def _passthrough(
    wrapped: Callable[..., Any], instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    return ("wrapped", wrapped(*args, **kwargs))


def _decorated_multiply(a: int, b: int) -> int:
    return a * b


#: As the decorator will leave it: the module-level name is a wrapt wrapper.
decorated_multiply = wrapt.FunctionWrapper(_decorated_multiply, _passthrough)


@wrapt.decorator
def _passthrough_decorator(
    wrapped: Callable[..., Any], instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    return ("wrapped", wrapped(*args, **kwargs))


@_passthrough_decorator
def decorated_pid() -> int:
    return os.getpid()


class Counter:
    def __init__(self, start: int) -> None:
        self.start = start

    @_passthrough_decorator
    def add(self, amount: int) -> int:
        return self.start + amount

    @_passthrough_decorator
    @staticmethod
    def double(value: int) -> int:
        return value * 2

    @_passthrough_decorator
    @classmethod
    def name(cls) -> str:
        return cls.__name__


def fork_and_return_pid() -> int:
    """os.fork() inside the call: only the original child may answer."""
    os.fork()
    return os.getpid()


def pid_from_a_nested_child() -> tuple[int, int]:
    """(this process, the child it ran a call in): for a daemonic Pool worker."""
    return (os.getpid(), call_in_process(pid, (), {}, seconds=10.0, grace=1.0, name="pid()"))


def sigusr1_handler() -> object:
    return signal.getsignal(signal.SIGUSR1)
