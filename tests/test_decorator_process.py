"""@timeout(isolation="process") as users write it; the module itself: test_process.py."""

from __future__ import annotations

import os

import _decorated_targets as targets
import pytest
from helpers import assert_takes_about

from watchdog_timeout import ProcessCrashed, TimeoutExpired, timeout


def test_process_call_returns_from_another_process() -> None:
    total, pid = targets.add(2, 3)
    assert total == 5
    assert pid != os.getpid()


def test_process_call_is_stopped_in_c_code() -> None:
    with assert_takes_about(0.2), pytest.raises(TimeoutExpired) as caught:
        targets.hang()
    assert caught.value.stopped
    assert caught.value.name.endswith("hang")


def test_process_crash_is_not_a_timeout() -> None:
    with pytest.raises(ProcessCrashed, match="SIGSEGV"):
        targets.crash()


def test_process_exception_keeps_the_child_traceback() -> None:
    with pytest.raises(LookupError, match="from the child") as caught:
        targets.fail("from the child")
    assert "fail" in str(caught.value.__cause__)


def test_process_nested_calls_the_inner_limit_reports() -> None:
    with assert_takes_about(0.3), pytest.raises(TimeoutExpired, match="inner exceeded"):
        targets.nest(0.3)


def test_process_method_of_a_module_level_class() -> None:
    assert targets.Service(40).shifted(2) == 42


def test_process_refuses_a_closure_clearly() -> None:
    @timeout(1, isolation="process")
    def local() -> int:
        return 1

    with pytest.raises((TypeError, ValueError), match="local"):
        local()
