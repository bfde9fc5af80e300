"""Every pair of limits nested both ways: the shorter one fires on time and reports itself.

``deadline()``, ``@timeout`` inline, in a thread and in a process, and ``Watchdog``: an
outer limit must reach the code under an inner one whatever their kinds, and the code
between the two must never catch the outer expiry as TimeoutExpired (it passes through
it as a private BaseException until its own scope converts it).
"""

from __future__ import annotations

import time

import pytest
from _nesting_targets import KINDS, between, limited

from watchdog_timeout import TimeoutExpired

SHORT, LONG, WORK = 0.15, 0.6, 3.0
#: A generous bound: the machines are shared and noisy; grace and process start-up add.
SLACK = 1.5


@pytest.mark.parametrize("inner", KINDS)
@pytest.mark.parametrize("outer", KINDS)
def test_a_shorter_outer_limit_fires_through_the_inner_one(outer: str, inner: str) -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutExpired) as caught:
        limited(outer, SHORT, between, inner, LONG, WORK)
    elapsed = time.monotonic() - start
    assert caught.value.seconds == SHORT  # the outer reports, not the inner
    assert elapsed < SHORT + SLACK, f"{outer} around {inner}: took {elapsed:.2f} s"


@pytest.mark.parametrize("inner", KINDS)
@pytest.mark.parametrize("outer", KINDS)
def test_a_shorter_inner_limit_fires_and_is_caught_between(outer: str, inner: str) -> None:
    start = time.monotonic()
    outcome = limited(outer, LONG * 4, between, inner, SHORT, WORK)
    elapsed = time.monotonic() - start
    assert outcome == ("caught between", SHORT)
    assert elapsed < SHORT + SLACK, f"{outer} around {inner}: took {elapsed:.2f} s"
