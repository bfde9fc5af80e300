"""Validating durations, and the clock every deadline is measured on."""

from __future__ import annotations

import math
import numbers
import sys
import time
from typing import TYPE_CHECKING, Callable, Union

if TYPE_CHECKING:
    from decimal import Decimal

__all__ = ("Seconds", "check_seconds", "check_when", "clock")

#: What a duration parameter accepts: a real number of seconds, or None for no limit.
Seconds = Union[float, int, "Decimal", None]

#: The clock of every deadline: monotonic, in seconds. Absolute times on it are ``when``.
clock: Callable[[], float] = time.monotonic


def _is_real(value: object) -> bool:
    # A Decimal can exist only once decimal is imported: no need to import it here.
    decimal = sys.modules.get("decimal")
    return isinstance(value, numbers.Real) or (
        decimal is not None and isinstance(value, decimal.Decimal)
    )


def check_seconds(value: object, name: str = "seconds") -> float | None:
    """Return ``value`` as a float number of seconds, or None for "no limit".

    None and ``inf`` mean no limit; 0 means at once.

    Raises:
        TypeError: ``value`` is not a real number (``bool`` and ``str`` included).
        ValueError: ``value`` is negative or NaN.
    """
    if value is None:
        return None
    value_type = type(value)
    if (value_type is not float and value_type is not int) and (
        isinstance(value, bool) or not _is_real(value)
    ):
        raise TypeError(
            f"`{name}` must be a number of seconds or None, got {value!r} ({value_type.__name__})"
        )
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except OverflowError:  # an int too large for a float
        seconds = math.inf if value > 0 else -math.inf  # type: ignore[operator]
    except ValueError:  # Decimal('sNaN')
        seconds = math.nan
    if seconds >= 0.0:
        return None if seconds == math.inf else seconds + 0.0  # -0.0 becomes 0.0
    if math.isnan(seconds):
        raise ValueError(f"`{name}` must be a number of seconds, not NaN, got {value!r}")
    raise ValueError(f"`{name}` must be non-negative, got {value!r}")


def check_when(value: object, name: str = "when") -> float | None:
    """Return ``value`` as a time on the monotonic clock, or None for "no limit".

    None and ``inf`` mean no limit; any other real number is a time, past ones too.

    Raises:
        TypeError: ``value`` is not a real number (``bool`` and ``str`` included).
        ValueError: ``value`` is NaN or ``-inf``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not _is_real(value):
        raise TypeError(
            f"`{name}` must be a time on the time.monotonic() clock or None, got {value!r} "
            f"({type(value).__name__})"
        )
    try:
        when = float(value)  # type: ignore[arg-type]
    except OverflowError:
        when = math.inf if value > 0 else -math.inf  # type: ignore[operator]
    except ValueError:  # Decimal('sNaN')
        when = math.nan
    if math.isnan(when) or when == -math.inf:
        raise ValueError(f"`{name}` must be a time on the time.monotonic() clock, got {value!r}")
    return None if when == math.inf else when
