"""Stopping threads: ask first, then insist.

Three workers: one that checks ``stopped()`` (it ends when asked), one busy in a
loop that never checks (it is interrupted after the grace period), and one that
swallows the first interrupt with a bare ``except:`` (it is interrupted again
until it ends). ``kill()`` returns whether each ended; ``exception`` keeps what
its ``run()`` raised.

Run: python examples/stoppable_thread.py
"""

from __future__ import annotations

import time

from watchdog_timeout import StoppableThread


class Polite(StoppableThread):
    def run(self) -> None:
        while not self.stopped():
            self.stop_event.wait(0.01)


class Busy(StoppableThread):
    def run(self) -> None:
        total = 0
        while True:  # never checks stopped()
            total += 1


class Stubborn(StoppableThread):
    def run(self) -> None:
        try:
            while True:
                pass
        except BaseException:  # swallows the first interrupt
            print("  stubborn: caught one, carrying on")
        while True:
            pass


def main() -> None:
    for worker in (Polite(), Busy(), Stubborn()):
        worker.start()
        time.sleep(0.05)
        start = time.monotonic()
        ended = worker.kill(grace=0.2, timeout=2.0)
        print(
            f"{type(worker).__name__}: ended={ended} after {time.monotonic() - start:.2f} s, "
            f"exception={worker.exception!r}"
        )


if __name__ == "__main__":
    main()
