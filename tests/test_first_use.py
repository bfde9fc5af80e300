"""The first use of the library in a process, cut short anywhere by an exception from elsewhere.

A Ctrl-C can land at any check point of a thread's first scope: while its state is
created, while the wake-up handler is installed, while ``ctypes`` and ``dis`` are
imported. A trace function raises at each line of that path in turn, in a fresh
interpreter; the next scope must then work, in the main thread and in another.
"""

from __future__ import annotations

from helpers import run_python

_CUT_SHORT_AT_LINE = """
import signal, sys, threading, time
import watchdog_timeout
from watchdog_timeout import TimeoutExpired, deadline
from watchdog_timeout import _apart, _async_raise, _bytecode, _registry, _wakeup

FIRST_USE = {f.__code__ for f in (
    _apart.run_apart, _async_raise.ensure_loaded, _async_raise._load, _bytecode.load,
    _registry.current_state, _wakeup.install_wakeup)}
target, seen = {n}, [0]

def tracer(frame, event, arg):
    if frame.f_code in FIRST_USE:
        frame.f_trace = local
    return None

def local(frame, event, arg):
    if event == "line":
        seen[0] += 1
        if seen[0] == target:
            sys.settrace(None)
            frame.f_trace = None
            raise KeyboardInterrupt
    return local

sys.settrace(tracer)
try:
    with deadline(5):
        pass
except KeyboardInterrupt:
    pass
sys.settrace(None)

def busy_limited():
    try:
        with deadline(0.1):
            while True:
                pass
    except TimeoutExpired:
        return True

fired = [busy_limited()]
worker = threading.Thread(target=lambda: fired.append(busy_limited()), daemon=True)
worker.start()
worker.join(10)
installed = signal.getsignal(_wakeup._wakeup_signal) is _wakeup._on_wakeup_signal
print("cut" if seen[0] >= target else "past", fired == [True, True], installed)
"""


def test_a_first_use_cut_short_at_any_line_leaves_the_library_working() -> None:
    results = []
    for line in range(1, 60):
        done = run_python(_CUT_SHORT_AT_LINE.replace("{n}", str(line)))
        cut, works, installed = done.stdout.split() if done.stdout else ("?", "?", "?")
        if cut != "cut":
            break  # past the last line of the first use
        results.append((line, works, installed, done.stderr[-300:]))
    assert len(results) > 15, f"the tracer found {len(results)} lines: the test is broken"
    broken = [r for r in results if r[1:3] != ("True", "True")]
    assert not broken, broken
