"""Quickstart: a hard time limit on a slow function, and on a block of code.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import time

from watchdog_timeout import TimeoutExpired, deadline, remaining, timeout


@timeout(0.5)
def crunch(n: int) -> int:
    """Pure-Python work that takes as long as n says."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def main() -> None:
    print("crunch(1_000) =", crunch(1_000))
    start = time.monotonic()
    try:
        crunch(10**12)
    except TimeoutExpired as error:
        print(f"crunch(10**12): {error} (after {time.monotonic() - start:.2f} s)")

    with deadline(1.0) as outer:
        with deadline(0.2, suppress=True) as step:
            time.sleep(5)  # the main thread is woken from blocking calls
        print(f"step expired: {step.expired}; {remaining():.2f} s left in the outer block")
    print(f"outer expired: {outer.expired}")


if __name__ == "__main__":
    main()
