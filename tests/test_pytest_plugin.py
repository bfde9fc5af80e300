"""The pytest plugin (``--deadline``), run on small test files through ``pytester``.

Most runs are in-process (fast); a run whose last resort ends the process, pytest
run in a non-main thread, and xdist use a subprocess.
"""

from __future__ import annotations

import gc
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from watchdog_timeout import _pytest_run

BUSY_THEN_PASS = """
    def test_busy():
        while True:
            pass

    def test_next():
        pass
"""


@pytest.fixture(autouse=True, scope="module")
def collect_inner_sessions() -> Iterator[None]:
    """Collect what the in-process runs left behind (reports, tracebacks, frames).

    Before the next modules, whose timing tests a collection in the middle would disturb.
    """
    yield
    gc.collect()


#: Plugins the inner runs do without: hypothesis's costs 2 s per run.
QUIET = ("-p", "no:hypothesispytest", "-p", "no:cacheprovider")


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*QUIET, *args)


def _timed(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, float]:
    start = time.monotonic()
    result = _run(pytester, *args)
    return result, time.monotonic() - start


def test_plugin_busy_test_fails_and_the_next_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(BUSY_THEN_PASS)
    result, elapsed = _timed(pytester, "--deadline=0.3")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*deadline: 0.3 s per test (setup, call and teardown), grace 5 s*",
            "*TimeoutExpired: test_plugin_busy_test_fails_and_the_next_passes.py::test_busy "
            "exceeded its time limit of 0.3 seconds*; it was in test_busy (*.py:*)",
        ]
    )
    assert elapsed < 10


def test_plugin_report_shows_the_stack_at_expiry_without_our_frames(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def inner():
            while True:
                pass

        def outer():
            inner()

        def test_deep():
            outer()
        """
    )
    result = _run(pytester, "--deadline=0.3", "--tb=long")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            ">*outer()",
            ">*inner()",
            "*while True:",
            "*it was in inner (*.py:*), called from outer (*.py:6), called from test_deep (*.py:9)",
        ]
    )
    output = result.stdout.str()
    assert "_pytest_plugin.py" not in output
    assert "_scope.py" not in output


def test_plugin_main_thread_sleep_fails_at_the_limit(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time

        def test_sleep():
            time.sleep(30)
        """
    )
    result, elapsed = _timed(pytester, "--deadline=0.3")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*exceeded its time limit of 0.3 seconds*; it was in test_sleep*"])
    assert elapsed < 10


def test_plugin_except_exception_cannot_swallow_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time

        def test_stubborn():
            for _ in range(100):
                try:
                    time.sleep(30)
                except Exception:
                    pass
        """
    )
    result, elapsed = _timed(pytester, "--deadline=0.3")
    result.assert_outcomes(failed=1)
    assert elapsed < 10


def test_plugin_a_test_that_swallows_the_interrupt_still_fails(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import time

        def test_swallows():
            try:
                time.sleep(30)
            except BaseException:
                pass
        """
    )
    result, elapsed = _timed(pytester, "--deadline=0.3")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_swallows exceeded its time limit of 0.3 seconds*"])
    assert elapsed < 10


def test_plugin_marker_overrides_and_lifts_the_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.deadline(None)
        def test_lifted():
            time.sleep(0.35)

        @pytest.mark.deadline(0.15)
        def test_shorter():
            time.sleep(30)

        @pytest.mark.deadline(seconds=0)
        def test_zero_lifts():
            time.sleep(0.35)

        @pytest.mark.deadline(float("inf"))
        def test_inf_lifts():
            time.sleep(0.35)

        @pytest.mark.deadline(0.15)
        class TestClass:
            def test_in_class(self):
                time.sleep(30)

            @pytest.mark.deadline(None)
            def test_closest_wins(self):
                time.sleep(0.35)

        def test_option():
            time.sleep(30)
        """
    )
    result = _run(pytester, "--deadline=0.25", "-v")
    result.assert_outcomes(failed=3, passed=4)
    result.stdout.fnmatch_lines(
        [
            "*test_shorter exceeded its time limit of 0.15 seconds*",
            "*test_in_class exceeded its time limit of 0.15 seconds*",
            "*test_option exceeded its time limit of 0.25 seconds*",
        ],
        consecutive=False,
    )


def test_plugin_module_marker_without_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.deadline(0.3)

        def test_busy():
            while True:
                pass

        def test_ok():
            pass
        """
    )
    result = _run(
        pytester,
    )
    result.assert_outcomes(failed=1, passed=1)


def test_plugin_marker_with_a_bad_value_errors_that_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.deadline("soon")
        def test_bad():
            pass

        def test_ok():
            pass
        """
    )
    result = _run(
        pytester,
    )
    result.assert_outcomes(errors=1, passed=1)
    result.stdout.fnmatch_lines(["*`seconds` must be a number or None, got 'soon'*"])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--deadline=abc", "--deadline must be a number of seconds, got 'abc'"),
        ("--deadline=-1", "--deadline must be non-negative, got '-1'"),
        ("--deadline-session=nan", "--deadline-session must be non-negative, got 'nan'"),
        ("--deadline-grace=0", "--deadline-grace must be a positive number of seconds, got '0'"),
    ],
)
def test_plugin_bad_option_is_a_usage_error(
    pytester: pytest.Pytester, option: str, message: str
) -> None:
    pytester.makepyfile("def test_ok(): pass")
    result = _run(pytester, option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_plugin_fixture_overruns_error_and_teardown_goes_on(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest

        torn_down = []

        @pytest.fixture
        def slow_setup():
            time.sleep(30)
            yield

        @pytest.fixture
        def first():
            yield
            torn_down.append("first")

        @pytest.fixture
        def slow_teardown():
            yield
            while True:
                pass

        @pytest.fixture
        def last():
            yield
            torn_down.append("last")

        def test_setup(first, slow_setup):
            pass

        def test_teardown(first, slow_teardown, last):
            pass

        def test_after():
            assert torn_down == ["first", "last", "first"]
        """
    )
    result = _run(pytester, "--deadline=0.3", "-p", "no:randomly")
    result.assert_outcomes(errors=2, passed=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_setup*",
            "*test_setup exceeded its time limit of 0.3 seconds*; it was in slow_setup*",
            "*ERROR at teardown of test_teardown*",
            "*test_teardown exceeded its time limit of 0.3 seconds*; it was in slow_teardown*",
        ]
    )


def test_plugin_module_fixture_overrun_errors_each_test_that_uses_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.fixture(scope="module")
        def slow_module():
            time.sleep(30)

        def test_first(slow_module):
            pass

        def test_second(slow_module):
            pass

        def test_without():
            pass
        """
    )
    result = _run(pytester, "--deadline=0.3", "-W", "error", "-p", "no:randomly")
    result.assert_outcomes(errors=2, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_first exceeded its time limit of 0.3 seconds*; it was in slow_module*",
            "*test_second exceeded its time limit of 0.3 seconds*; it was in slow_module*",
        ]
    )


def test_plugin_unittest_test_case(pytester: pytest.Pytester) -> None:
    # unittest's runner catches the interrupt (a bare except) and goes on.
    pytester.makepyfile(
        """
        import unittest

        class TestCase(unittest.TestCase):
            def test_busy(self):
                while True:
                    pass

            def test_next(self):
                pass
        """
    )
    result = _run(pytester, "--deadline=0.3", "-W", "error")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*TimeoutExpired: *test_busy exceeded its time limit*"])
    assert "_Interrupt" not in result.stdout.str()


def test_plugin_overrun_in_a_test_leaves_its_teardown_a_grace_period(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest

        torn_down = []

        @pytest.fixture
        def resource():
            yield
            time.sleep(0.2)
            torn_down.append("resource")

        def test_busy(resource):
            while True:
                pass

        def test_after():
            assert torn_down == ["resource"]
        """
    )
    result = _run(pytester, "--deadline=0.3", "--deadline-grace=2")
    result.assert_outcomes(failed=1, passed=1)


def test_plugin_wraps_a_collectors_finalizers_once(pytester: pytest.Pytester) -> None:
    # A module's finalizers wait on the teardown stack over all its tests.
    pytester.makepyfile(
        """
        import sys
        import pytest

        @pytest.fixture(scope="module")
        def shared():
            yield
            depth, frame = 0, sys._getframe()
            while frame is not None:
                depth, frame = depth + 1, frame.f_back
            assert depth < 150

        @pytest.mark.parametrize("i", range(100))
        def test_many(shared, i):
            pass
        """
    )
    result = _run(pytester, "--deadline=30")
    result.assert_outcomes(passed=100)


def test_plugin_func_only_leaves_fixtures_unlimited(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.fixture
        def slow():
            time.sleep(0.5)

        def test_fast(slow):
            pass

        def test_slow():
            time.sleep(30)
        """
    )
    result = _run(pytester, "--deadline=0.3", "--deadline-func-only")
    result.assert_outcomes(failed=1, passed=1)


def test_plugin_ini_options(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        deadline = 0.3
        deadline_grace = 1
        """
    )
    pytester.makepyfile(BUSY_THEN_PASS)
    result = _run(
        pytester,
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*deadline: 0.3 s per test*grace 1 s*"])


def test_plugin_does_nothing_without_configuration(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time

        def test_slowish(request):
            time.sleep(0.4)
            assert "runtest" not in vars(request.node)
        """
    )
    result = _run(
        pytester,
    )
    result.assert_outcomes(passed=1)
    assert "deadline:" not in result.stdout.str()


def test_plugin_session_deadline_stops_the_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time

        def test_1():
            time.sleep(0.1)

        def test_2():
            time.sleep(30)

        def test_3():
            pass
        """
    )
    # Wide: collection and test_1 must fit in the session's time on a busy machine.
    result, elapsed = _timed(pytester, "--deadline-session=1.5", "-p", "no:randomly")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*the test session (--deadline-session) exceeded its time limit of 1.5 seconds*",
            "*Interrupted: --deadline-session: the session took longer than 1.5 seconds*",
        ]
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert elapsed < 10


def test_plugin_alongside_pytest_timeout(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest

        def test_ours():
            time.sleep(30)

        @pytest.mark.deadline(10)
        @pytest.mark.timeout(0.3, method="signal")
        def test_theirs():
            time.sleep(30)

        def test_next():
            pass
        """
    )
    result, elapsed = _timed(pytester, "--deadline=0.3", "--timeout=10")
    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_ours exceeded its time limit of 0.3 seconds*",
            "*Timeout (>0.3s) from pytest-timeout*",
        ],
        consecutive=False,
    )
    assert elapsed < 10


RUN_IN_A_THREAD = """
import sys
import threading
import pytest

codes = []
thread = threading.Thread(
    target=lambda: codes.append(pytest.main(sys.argv[1:])), name="pytest-runner"
)
thread.start()
thread.join()
sys.exit(codes[0])
"""


def _run_in_a_thread(
    pytester: pytest.Pytester, tests: Path, *args: str
) -> tuple[pytest.RunResult, float]:
    script = pytester.makepyfile(runner=RUN_IN_A_THREAD)
    start = time.monotonic()
    result = pytester.run(sys.executable, str(script), *QUIET, *args, str(tests), timeout=60)
    return result, time.monotonic() - start


def test_plugin_stops_a_busy_test_when_pytest_runs_in_another_thread(
    pytester: pytest.Pytester,
) -> None:
    tests = pytester.makepyfile(BUSY_THEN_PASS)
    result, elapsed = _run_in_a_thread(pytester, tests, "--deadline=0.3")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*test_busy exceeded its time limit of 0.3 seconds*"])
    assert elapsed < 20


def test_plugin_last_resort_for_a_blocked_call_outside_the_main_thread(
    pytester: pytest.Pytester,
) -> None:
    tests = pytester.makepyfile(
        """
        import time

        def test_blocked():
            time.sleep(30)

        def test_never_reached():
            pass
        """
    )
    result, elapsed = _run_in_a_thread(pytester, tests, "--deadline=0.3", "--deadline-grace=0.5")
    assert result.ret == 1
    result.stderr.fnmatch_lines(
        [
            "watchdog_timeout: test_plugin_last_resort_for_a_blocked_call_outside_the_main_thread"
            ".py::test_blocked did not stop within 0.5 s after its time limit ran out*",
            "*in test_blocked",
        ],
        consecutive=False,
    )
    assert "test_never_reached" not in result.stdout.str()
    assert elapsed < 20


def test_plugin_last_resort_for_c_code_that_holds_the_gil(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_stuck():
            sum(range(10**13))

        def test_never_reached():
            pass
        """
    )
    start = time.monotonic()
    result = pytester.runpytest_subprocess(
        *QUIET, "--deadline=0.3", "--deadline-grace=0.2", timeout=60
    )
    elapsed = time.monotonic() - start
    assert result.ret == 1  # faulthandler's exit code
    result.stderr.fnmatch_lines(
        [
            "Timeout (*)!",
            "*in test_stuck",
            "*in <test test_plugin_last_resort_for_c_code_that_holds_the_gil.py::test_stuck, "
            "limited by watchdog_timeout>",
        ],
        consecutive=False,
    )
    output = result.stdout.str()
    assert "test_never_reached" not in output
    assert "passed" not in output
    assert "failed" not in output
    assert elapsed < 20


def test_plugin_with_xdist(pytester: pytest.Pytester) -> None:
    # The last resort ends one worker; xdist reports its test and starts another.
    pytester.makepyfile(
        textwrap.dedent(BUSY_THEN_PASS)
        + textwrap.dedent(
            """
            def test_stuck():
                sum(range(10**13))

            def test_a():
                pass

            def test_b():
                pass
            """
        )
    )
    result = pytester.runpytest_subprocess(
        *QUIET, "-n", "2", "--deadline=0.5", "--deadline-grace=0.2", timeout=60
    )
    result.assert_outcomes(failed=2, passed=3)
    result.stdout.fnmatch_lines(
        [
            "*test_busy exceeded its time limit of 0.5 seconds*",
            "*worker 'gw*' crashed while running *test_stuck*",
        ],
        consecutive=False,
    )


@pytest.mark.slow
def test_plugin_interrupt_never_reaches_the_next_test(pytester: pytest.Pytester) -> None:
    # Every other test overruns; the one after it must pass, every time.
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def resource():
            yield
            sum(i for i in range(2000))

        @pytest.mark.parametrize(
            "busy",
            [pytest.param(True, marks=pytest.mark.deadline(0.05)), False] * 200,
        )
        def test_alternating(busy, resource):
            while busy:
                pass
            sum(i for i in range(3000))
        """
    )
    result = _run(pytester, "-p", "no:randomly")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 200
    # An overrun lands in the test, or (on a busy machine) in its fixture's setup.
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) == 200


def test_plugin_names_its_trampoline_after_the_test() -> None:
    trampoline = _pytest_run._named_trampoline("tests/x.py::test_y[1]")
    assert (
        trampoline.__code__.co_name == "<test tests/x.py::test_y[1], limited by watchdog_timeout>"
    )
