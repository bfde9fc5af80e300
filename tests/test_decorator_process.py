"""@timeout(isolation="process") as users write it; the module itself: test_process.py."""

from __future__ import annotations

import os
import traceback

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


def test_process_exception_keeps_the_function_frames() -> None:
    with pytest.raises(LookupError, match="from the child") as caught:
        targets.fail("from the child")
    last = traceback.extract_tb(caught.value.__traceback__)[-1]
    assert (last.name, last.line) == ("fail", "raise LookupError(message)")


def test_process_nested_calls_the_inner_limit_reports() -> None:
    with assert_takes_about(0.3), pytest.raises(TimeoutExpired, match="inner exceeded"):
        targets.nest(0.3)


def test_process_method_of_a_module_level_class() -> None:
    assert targets.Service(40).shifted(2) == 42


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_process_runs_a_closure_and_a_local_class_method(start_method: str) -> None:
    base = 40

    @timeout(5, isolation="process", start_method=start_method)
    def shifted(n: int) -> tuple[int, int]:
        return base + n, os.getpid()

    class Local:
        @timeout(5, isolation="process", start_method=start_method)
        def shifted(self, n: int) -> tuple[int, int]:
            return base + n, os.getpid()

    for function in (shifted, Local().shifted):
        total, pid = function(2)
        assert total == 42
        assert pid != os.getpid()


def test_process_start_method_typo_is_refused_at_decoration() -> None:
    with pytest.raises(ValueError, match=r"`start_method` must be .* got 'forkserve'"):
        timeout(1, isolation="process", start_method="forkserve")
