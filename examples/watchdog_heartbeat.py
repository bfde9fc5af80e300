"""A worker loop whose heartbeat stops: the watchdog says where it got stuck.

The loop processes items and kicks its watchdog after each one. Item 7 hangs in
pure Python (a retry loop that never gives up); 0.3 s without a kick and the
loop is interrupted with TimeoutExpired, whose message and ``stack`` attribute
say where it was. A second, report-only watchdog watches another thread from
outside and only logs.

Run: python examples/watchdog_heartbeat.py
"""

from __future__ import annotations

import logging
import threading
import time

from watchdog_timeout import TimeoutExpired, Watchdog


def fetch(item: int) -> str:
    if item == 7:
        while True:  # a retry loop that never gives up
            time.sleep(0.001)
    time.sleep(0.02)
    return f"item {item}"


def process(item: int) -> str:
    return fetch(item).upper()


def main() -> None:
    logging.basicConfig(format="%(levelname)s %(message)s")
    try:
        with Watchdog(0.3, label="ingest loop") as dog:
            for item in range(20):
                print(process(item))
                dog.kick()
    except TimeoutExpired as error:
        print(f"interrupted: {error}")
        print(f"  innermost frame: {error.stack[0] if error.stack else None}")
        print(f"  kicks: {dog.kicks}, longest gap: {dog.longest_gap:.3f} s")

    # Report only, from outside: a poller thread that stalls is logged, not stopped.
    stall = threading.Event()
    poller = threading.Thread(target=stall.wait, args=(0.5,), name="poller")
    poller.start()
    observer = Watchdog(0.2, interrupt=False, label="poller").start(poller)
    poller.join()
    observer.stop()


if __name__ == "__main__":
    main()
