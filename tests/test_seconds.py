"""check_seconds(): what a duration parameter accepts, what it returns, what it refuses.

None, ``inf`` and numbers too large for a float mean "no limit" (None); every real
number >= 0 comes back as a float; negative numbers and NaN are a ValueError, and
anything that is not a real number (bool included) a TypeError. Every message names
the parameter and shows the value's repr. ``clock`` is the monotonic clock.
"""

from __future__ import annotations

import math
import time
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchdog_timeout._seconds import check_seconds, clock


@pytest.mark.parametrize(
    "value",
    [None, math.inf, 10**400, Decimal("Infinity"), Decimal("1e400"), Fraction(10**400, 3)],
    ids=repr,
)
def test_check_seconds_no_limit_is_none(value: object) -> None:
    assert check_seconds(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (0.0, 0.0),
        (1, 1.0),
        (2.5, 2.5),
        (10**20, 1e20),
        (Fraction(1, 4), 0.25),
        (Decimal("0.2"), 0.2),
        (Decimal("3"), 3.0),
        (5e-324, 5e-324),
        (1.7976931348623157e308, 1.7976931348623157e308),
    ],
    ids=repr,
)
def test_check_seconds_real_numbers_become_floats(value: object, expected: float) -> None:
    result = check_seconds(value)
    assert type(result) is float
    assert result == expected


def test_check_seconds_zero_is_positive_zero() -> None:
    # -0.0 is zero seconds; returned as is it shows up as "-0 seconds" in messages.
    for value in (0, 0.0, -0.0, Decimal("-0")):
        result = check_seconds(value)
        assert result == 0.0
        assert math.copysign(1.0, result) == 1.0, f"{value!r} -> {result!r}"


@pytest.mark.parametrize(
    "value",
    [-1, -0.001, -math.inf, -(10**400), Fraction(-1, 3), Decimal("-0.5"), Decimal("-1e400")],
    ids=repr,
)
def test_check_seconds_negative_is_value_error(value: object) -> None:
    with pytest.raises(ValueError, match="non-negative") as info:
        check_seconds(value, "grace")
    message = str(info.value)
    assert "`grace`" in message
    assert repr(value) in message


@pytest.mark.parametrize(
    "value",
    [math.nan, -math.nan, Decimal("NaN"), Decimal("-NaN"), Decimal("sNaN")],
    ids=repr,
)
def test_check_seconds_nan_is_value_error(value: object) -> None:
    with pytest.raises(ValueError) as info:
        check_seconds(value, "grace")
    message = str(info.value)
    assert "`grace`" in message
    assert "NaN" in message
    assert repr(value) in message


class _NotANumber:
    def __repr__(self) -> str:
        return "<not a number>"


@pytest.mark.parametrize(
    "value",
    [True, False, "1", b"1", 1 + 0j, 0j, [1], (1,), {}, _NotANumber(), object()],
    ids=repr,
)
def test_check_seconds_non_number_is_type_error(value: object) -> None:
    with pytest.raises(TypeError) as info:
        check_seconds(value, "grace")
    message = str(info.value)
    assert "`grace`" in message
    assert repr(value) in message
    assert type(value).__name__ in message


def test_check_seconds_default_name_is_seconds() -> None:
    with pytest.raises(ValueError, match=r"^`seconds` "):
        check_seconds(-1)
    with pytest.raises(TypeError, match=r"^`seconds` "):
        check_seconds("1")


def test_clock_is_monotonic_in_seconds() -> None:
    assert clock is time.monotonic
    first = clock()
    time.sleep(0.01)
    assert 0.009 <= clock() - first < 5.0


@given(st.floats(min_value=0.0, allow_infinity=False, allow_nan=False))
def test_check_seconds_finite_non_negative_float_round_trips(value: float) -> None:
    result = check_seconds(value)
    assert type(result) is float
    assert result == value


@given(st.integers(min_value=0, max_value=2**53))
def test_check_seconds_exact_int_round_trips(value: int) -> None:
    assert check_seconds(value) == float(value)


@given(st.floats(max_value=-0.0, exclude_max=True, allow_nan=False))
def test_check_seconds_negative_float_is_value_error(value: float) -> None:
    with pytest.raises(ValueError, match="`delay` must be non-negative"):
        check_seconds(value, "delay")
