"""_frames: whether a frame is inside the ``with`` block of a scope, and where it lands.

A small context manager records its owner frame and ``f_lasti`` the way
``Deadline.__enter__`` does (past ``contextlib`` frames and a ``@contextmanager``
generator), and ``Probe.where()`` asks ``position()`` from the places a block can
be: its body, nested ``try``/``with``/loops, after it, in an outer ``except``. Then the
loop back-edges that CPython's exception table leaves outside a block (EDGE), checked
against the bytecode (``dis``) and against where CPython really raises; and, on
3.13, ``landing()`` from a pause.
"""

from __future__ import annotations

import contextlib
import dis
import opcode
import sys
import threading
import time
from collections.abc import Iterator
from types import CodeType, FrameType, TracebackType
from typing import Callable, cast

import pytest
from helpers import run_python

from watchdog_timeout import _bytecode
from watchdog_timeout._async_raise import send_async_exc
from watchdog_timeout._bytecode import LAYOUT, is_with_entry_at, with_entry_layout
from watchdog_timeout._frames import (
    EDGE,
    INSIDE,
    LAZY,
    OUTSIDE,
    Marker,
    Where,
    landing,
    marker_at_enter,
    position,
    resolve_marker,
    with_frame,
)

CPYTHON = sys.implementation.name == "cpython"
EXCEPTION_TABLE = CPYTHON and sys.version_info >= (3, 11)

cpython_only = pytest.mark.skipif(
    not CPYTHON, reason="PyPy: a frame on the stack always counts as inside (no block data)"
)
needs_exception_table = pytest.mark.skipif(
    not EXCEPTION_TABLE, reason="exception tables and JUMP_BACKWARD: CPython 3.11+"
)
needs_3_13 = pytest.mark.skipif(
    not (CPYTHON and sys.version_info >= (3, 13)),
    reason="landing() follows the bytecode only where a pause raises at the next check "
    "point: CPython 3.13+",
)

_CONTEXTLIB = contextlib.__file__
_GENERATOR_FLAGS = 0x20 | 0x80 | 0x100 | 0x200


def _user_frame(frame: FrameType) -> FrameType:
    """The frame whose block is being entered: past contextlib and its generators."""
    while frame.f_back is not None and (
        frame.f_code.co_filename == _CONTEXTLIB
        or (
            frame.f_code.co_flags & _GENERATOR_FLAGS
            and frame.f_back.f_code.co_filename == _CONTEXTLIB
        )
    ):
        frame = frame.f_back
    return frame


class Probe:
    """A context manager that knows its block, as a Deadline does."""

    owner: FrameType
    lasti: int
    marker: Marker

    def __init__(self) -> None:
        self.exited = False
        self.entered = threading.Event()

    def __enter__(self) -> Probe:
        owner = _user_frame(sys._getframe(1))
        self.owner = owner
        self.lasti = owner.f_lasti
        self.marker = marker_at_enter(owner)
        self.entered.set()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.exited = True

    def resolved(self) -> Marker:
        if self.marker == LAZY:
            return resolve_marker(self.owner.f_code, self.lasti)
        return self.marker

    def where(self) -> Where:
        """Where the owner frame is now (it is at the call of this method)."""
        return position(self.owner, self.resolved())


# --- position() from real frames ----------------------------------------------------


def test_marker_at_enter_of_a_with_statement() -> None:
    with Probe() as probe:
        pass
    if CPYTHON:
        assert probe.marker == LAZY  # resolved later, off the hot path
        assert isinstance(probe.resolved(), int)
        assert probe.resolved() != LAZY
    else:
        assert probe.marker is None


# The tests record positions inside their blocks and assert afterwards: an assert
# statement (rewritten by pytest) inside a block makes the block much longer.


def test_position_inside_the_body() -> None:
    seen = []
    with Probe() as probe:
        seen.append(probe.where())
        x = 1
        seen.append(probe.where())
    assert seen == [INSIDE, INSIDE]
    assert x == 1


def test_position_inside_nested_try_except_finally() -> None:
    seen = []
    with Probe() as probe:
        try:
            seen.append(probe.where())
            raise KeyError("inner")
        except KeyError:
            seen.append(probe.where())
            try:
                seen.append(probe.where())
            finally:
                seen.append(probe.where())
        finally:
            seen.append(probe.where())
        seen.append(probe.where())
    assert seen == [INSIDE] * 6


def test_position_inside_nested_with() -> None:
    seen = []
    with Probe() as outer:
        with Probe() as inner:
            seen += [outer.where(), inner.where()]
            with contextlib.suppress(KeyError):
                seen += [outer.where(), inner.where()]
        seen.append(outer.where())
    assert seen == [INSIDE] * 5
    assert inner.exited
    assert outer.exited


@cpython_only
def test_position_inner_block_ends_before_the_outer() -> None:
    with Probe() as outer:
        with Probe() as inner:
            pass
        seen = [inner.where(), outer.where()]
    seen.append(outer.where())
    assert seen == [OUTSIDE, INSIDE, OUTSIDE]


def test_position_inside_loops() -> None:
    seen = []
    with Probe() as probe:
        for _ in range(3):
            seen.append(probe.where())
        n = 3
        while n:
            n -= 1
            seen.append(probe.where())
        while True:
            seen.append(probe.where())
            break
    assert seen == [INSIDE] * 7


def test_position_inside_a_callee_of_the_block() -> None:
    def callee(probe: Probe) -> Where:
        return probe.where()

    with Probe() as probe:
        seen = callee(probe)
    assert seen == INSIDE


@cpython_only
def test_position_outside_after_the_block() -> None:
    with Probe() as probe:
        pass
    seen = [probe.where()]
    for _ in range(2):
        seen.append(probe.where())
    assert seen == [OUTSIDE] * 3


@cpython_only
def test_position_outside_in_an_outer_except_after_the_block_raised() -> None:
    seen = []
    try:
        with Probe() as probe:
            seen.append(probe.where())
            raise KeyError("escapes")
    except KeyError:
        seen.append(probe.where())
    finally:
        seen.append(probe.where())
    assert seen == [INSIDE, OUTSIDE, OUTSIDE]


@cpython_only
def test_position_outside_in_a_later_block_of_the_same_frame() -> None:
    with Probe() as first:
        pass
    with Probe() as second:
        seen = [first.where(), second.where()]
    seen.append(second.where())
    assert seen == [OUTSIDE, INSIDE, OUTSIDE]


@cpython_only
def test_position_exit_stack_enter_context() -> None:
    seen = []
    with contextlib.ExitStack() as stack:
        probe = stack.enter_context(Probe())
        seen.append(probe.where())
        try:
            seen.append(probe.where())
        finally:
            seen.append(probe.where())
    assert probe.owner is sys._getframe()
    assert probe.exited
    seen.append(probe.where())
    assert seen == [INSIDE, INSIDE, INSIDE, OUTSIDE]


@contextlib.contextmanager
def _wrapped() -> Iterator[Probe]:
    with Probe() as probe:
        yield probe


@cpython_only
def test_position_contextmanager_wrapper_owner_is_the_user_frame() -> None:
    with _wrapped() as probe:
        seen = [probe.where()]
    assert probe.owner is sys._getframe()  # not the generator, not contextlib
    assert probe.exited
    seen.append(probe.where())
    assert seen == [INSIDE, OUTSIDE]


@cpython_only
def test_position_contextmanager_in_exit_stack() -> None:
    with contextlib.ExitStack() as stack:
        probe = stack.enter_context(_wrapped())
        seen = [probe.where()]
    assert probe.owner is sys._getframe()
    seen.append(probe.where())
    assert seen == [INSIDE, OUTSIDE]


def _long_block_function(statements: int) -> Callable[[Probe], list[Where]]:
    lines = [
        "def long_block(probe):",
        "    x = 0",
        "    with probe:",
        "        seen = [probe.where()]",
        *["        x += 1"] * statements,
        "        seen.append(probe.where())",
        "    seen.append(probe.where())",
        "    return seen",
    ]
    namespace: dict[str, object] = {}
    exec(compile("\n".join(lines), "<long block>", "exec"), namespace)
    return cast(Callable[[Probe], list[Where]], namespace["long_block"])


@cpython_only
@pytest.mark.parametrize("statements", [1, 40, 300])
def test_position_outside_after_a_long_block(statements: int) -> None:
    # On 3.9 past ~255 bytes of body (40 statements), on 3.10 past 255 instructions
    # (300), SETUP_WITH needs an EXTENDED_ARG prefix: f_lasti during __enter__ points
    # at the prefix, not at SETUP_WITH.
    probe = Probe()
    seen = _long_block_function(statements)(probe)
    assert probe.resolved() is not None, "no block marker: the whole frame counts as inside"
    assert seen == [INSIDE, INSIDE, OUTSIDE]


@pytest.mark.skipif(CPYTHON, reason="CPython has block data; see the tests above")
def test_position_is_always_inside_without_block_data() -> None:
    with Probe() as probe:
        assert probe.marker is None
    assert probe.where() == INSIDE


@needs_exception_table
def test_resolve_marker_is_the_handler_of_the_block() -> None:
    # Checked against dis: the handler of the range that starts after BEFORE_WITH.
    with Probe() as probe:
        pass
    code = probe.owner.f_code
    assert dis.opname[code.co_code[probe.lasti]] == "BEFORE_WITH"
    entries = dis.Bytecode(code).exception_entries  # type: ignore[attr-defined]
    handlers = {e.target for e in entries if e.start <= probe.lasti + 2 < e.end}
    assert handlers == {probe.resolved()}


# --- back-edges: fake frames on real code ------------------------------------------


class _FakeFrame:
    """What position() and landing() read from a frame, at a chosen instruction."""

    def __init__(self, code: CodeType, lasti: int, back: _FakeFrame | None = None) -> None:
        self.f_code = code
        self.f_lasti = lasti
        self.f_back = back


def _frame(code: CodeType, lasti: int, back: _FakeFrame | None = None) -> FrameType:
    return cast(FrameType, _FakeFrame(code, lasti, back))


class _Plain:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


def _dec(x: int) -> int:
    return x - 1


def _countdown(x: int) -> int:
    with _Plain():
        while x:
            x -= 1
    return x


def _countdown_calling(x: int) -> int:
    with _Plain():
        while x:
            x = _dec(x)
    return x


def _for_loop(x: int) -> int:
    with _Plain():
        for _ in range(x):
            pass
    return x


class _Layout:
    """Offsets in a function with one ``with`` block holding one loop."""

    def __init__(self, function: Callable[[int], int]) -> None:
        self.code = function.__code__
        instructions = list(dis.get_instructions(self.code))
        (enter,) = [i.offset for i in instructions if i.opname == "BEFORE_WITH"]
        self.enter = enter
        backs = [i for i in instructions if "JUMP_BACKWARD" in i.opname]
        assert len(backs) == 1, backs
        self.back_edge = backs[0].offset
        calls = [i.offset for i in instructions if i.opname.startswith("CALL")]
        body_calls = [o for o in calls if enter < o < self.back_edge]
        self.body_call = body_calls[-1] if body_calls else None
        self.exit_call = min(o for o in calls if o > self.back_edge)
        self.marker = resolve_marker(self.code, enter)
        entries = dis.Bytecode(self.code).exception_entries  # type: ignore[attr-defined]
        self.covered = any(e.start <= self.back_edge < e.end for e in entries)

    def position(self, offset: int) -> Where:
        return position(_frame(self.code, offset), self.marker)


@needs_exception_table
def test_position_back_edge_that_the_exception_table_misses() -> None:
    layout = _Layout(_countdown)
    if sys.version_info >= (3, 12):
        assert not layout.covered, "expected CPython to leave the back-edge uncovered"
    # From 3.13 an interrupt is raised *before* the jump and escapes the block: EDGE.
    # 3.11 and 3.12 raise after jumping, at the loop's top, inside the block.
    expected = EDGE if sys.version_info >= (3, 13) else INSIDE
    assert layout.position(layout.back_edge) == expected
    assert layout.position(layout.exit_call) == OUTSIDE
    assert layout.position(layout.enter + 2) == INSIDE


@needs_exception_table
def test_position_covered_back_edge_is_inside() -> None:
    layout = _Layout(_for_loop)
    assert layout.covered
    assert layout.position(layout.back_edge) == INSIDE


class _Stop(BaseException):
    """Sent into the sampled thread."""


@cpython_only
def test_position_agrees_with_where_cpython_raises() -> None:
    # Sample a thread looping directly in a block, send an exception while it is
    # paused, and see whether the block's __exit__ ran: INSIDE must mean it did, EDGE
    # that it did not (the exception escaped the block). Counted; must be zero.
    mismatches: list[tuple[Where, int, bool]] = []
    for _ in range(10):
        probe = Probe()
        state = [True]
        escaped: list[BaseException] = []

        def body(probe: Probe = probe, state: list[bool] = state) -> None:
            n = 0
            with probe:
                while state[0]:
                    n += 1

        def run(body: Callable[[], None] = body, escaped: list[BaseException] = escaped) -> None:
            try:
                body()
            except _Stop as exc:
                escaped.append(exc)

        thread = threading.Thread(target=run, name="test-frames-loop")
        thread.start()
        try:
            assert probe.entered.wait(10)
            where, lasti = _sample_and_send(thread, probe)
            thread.join(10)  # the exception, not the flag, must end the loop
        finally:
            state[0] = False
            thread.join(10)
        assert not thread.is_alive()
        assert len(escaped) == 1, "the exception was not delivered"
        if (where == INSIDE and not probe.exited) or (where == EDGE and probe.exited):
            mismatches.append((where, lasti, probe.exited))
        assert where != OUTSIDE
    assert mismatches == [], "position() disagrees with CPython (where, f_lasti, __exit__ ran)"


def _sample_and_send(thread: threading.Thread, probe: Probe) -> tuple[Where, int]:
    assert send_async_exc is not None
    ident = thread.ident
    assert ident is not None
    marker = probe.resolved()
    end = time.monotonic() + 10
    while time.monotonic() < end:
        top = sys._current_frames().get(ident)
        if top is None or top is not probe.owner:
            time.sleep(0.001)
            continue
        lasti = top.f_lasti
        where = position(top, marker)
        # No check point between this look and the send (as _delivery does it).
        if sys._current_frames().get(ident) is top and top.f_lasti == lasti:
            send_async_exc(ident, _Stop)
            return where, lasti
    pytest.fail("never saw the thread in its loop")


# --- landing (3.13) ------------------------------------------------------------------


@needs_3_13
def test_next_check_points_match_the_bytecode() -> None:
    layout = _Layout(_countdown_calling)
    assert layout.body_call is not None
    # After the call in the body: the uncovered back-edge, or (loop done) __exit__.
    assert _bytecode.next_check_points(layout.code, layout.body_call) == (
        (layout.back_edge, layout.exit_call),
        False,
    )
    # From the back-edge (3.13 checks before jumping): the call at the loop's top.
    assert _bytecode.next_check_points(layout.code, layout.back_edge) == (
        (layout.body_call,),
        False,
    )
    # Past the block: the function returns before any check point.
    points, leaves = _bytecode.next_check_points(layout.code, layout.exit_call)
    assert leaves
    assert points == ()


@needs_3_13
def test_landing_from_the_call_before_an_uncovered_back_edge_is_edge() -> None:
    layout = _Layout(_countdown_calling)
    assert layout.body_call is not None
    paused = _frame(layout.code, layout.body_call)
    assert layout.position(layout.body_call) == INSIDE  # where it is...
    assert landing(paused, paused, layout.marker) == EDGE  # ...is not where it lands


@needs_3_13
def test_landing_from_the_back_edge_itself_is_inside() -> None:
    layout = _Layout(_countdown_calling)
    paused = _frame(layout.code, layout.back_edge)
    assert layout.position(layout.back_edge) == EDGE
    assert landing(paused, paused, layout.marker) == INSIDE


@needs_3_13
def test_landing_in_a_loop_without_calls_is_edge() -> None:
    layout = _Layout(_countdown)
    paused = _frame(layout.code, layout.back_edge)
    assert landing(paused, paused, layout.marker) == EDGE


@needs_3_13
def test_landing_in_a_callee_that_keeps_running_is_inside() -> None:
    layout = _Layout(_countdown_calling)
    assert layout.body_call is not None
    boundary = _frame(layout.code, layout.body_call)
    callee = _Layout(_for_loop)  # a loop in the callee: its next point is its own
    top = _frame(callee.code, callee.back_edge, cast(_FakeFrame, boundary))
    assert landing(top, boundary, layout.marker) == INSIDE


@needs_3_13
def test_landing_in_a_callee_about_to_return_looks_at_the_caller() -> None:
    layout = _Layout(_countdown_calling)
    assert layout.body_call is not None
    boundary = _frame(layout.code, layout.body_call)
    callee_code = _dec.__code__
    instructions = list(dis.get_instructions(callee_code))
    (ret,) = [n for n, i in enumerate(instructions) if "RETURN" in i.opname]
    before_return = instructions[ret - 1].offset  # BINARY_OP: next, the return
    assert _bytecode.next_check_points(callee_code, before_return) == ((), True)
    top = _frame(callee_code, before_return, cast(_FakeFrame, boundary))
    # _dec returns into the body; the caller's next points include the back-edge.
    assert landing(top, boundary, layout.marker) == EDGE


@needs_3_13
def test_landing_from_past_the_block_is_outside() -> None:
    # At the call of __exit__ (a thread not scheduled there yet, or past an exit that
    # was skipped): never a place to send to, whatever the next check points are.
    layout = _Layout(_countdown_calling)
    paused = _frame(layout.code, layout.exit_call)
    assert landing(paused, paused, layout.marker) == OUTSIDE


@needs_3_13
def test_landing_in_a_callee_of_a_call_past_the_block_is_outside() -> None:
    layout = _Layout(_countdown_calling)
    boundary = _frame(layout.code, layout.exit_call)
    callee = _Layout(_for_loop)  # it keeps running, but not inside the block
    top = _frame(callee.code, callee.back_edge, cast(_FakeFrame, boundary))
    assert landing(top, boundary, layout.marker) == OUTSIDE


@pytest.mark.skipif(
    CPYTHON and sys.version_info >= (3, 13),
    reason="up to 3.12 a paused thread raises where it paused: landing() is position()",
)
@needs_exception_table
def test_landing_is_position_before_3_13() -> None:
    for function in (_countdown, _countdown_calling, _for_loop):
        layout = _Layout(function)
        for offset in (layout.back_edge, layout.exit_call, layout.enter + 2):
            frame = _frame(layout.code, offset)
            assert landing(frame, frame, layout.marker) == position(frame, layout.marker)


# --- with-entry layouts, 3.9 to 3.14, on synthetic bytecode -------------------------

# Opcode numbers of each layout (the values do not matter, only their roles).
# Since 3.12 opmap lists the pseudo instructions too (256 and up): SETUP_WITH among them.
_OPMAP_313 = {"BEFORE_WITH": 53, "CALL": 171, "EXTENDED_ARG": 144, "POP_TOP": 32, "SETUP_WITH": 266}
_OPMAP_310 = {"SETUP_WITH": 143, "CALL_FUNCTION": 131, "EXTENDED_ARG": 144, "POP_TOP": 1}
_OPMAP_314 = {"LOAD_SPECIAL": 92, "CALL": 52, "EXTENDED_ARG": 69, "POP_TOP": 31, "SETUP_WITH": 264}


def _code(*pairs: tuple[int, int]) -> bytes:
    return bytes(byte for pair in pairs for byte in pair)


def test_with_entry_layout_per_interpreter() -> None:
    assert with_entry_layout(_OPMAP_313) == "BEFORE_WITH"
    assert with_entry_layout(_OPMAP_310) == "SETUP_WITH"
    assert with_entry_layout(_OPMAP_314) == "LOAD_SPECIAL"  # its SETUP_WITH is a pseudo
    assert with_entry_layout({"CALL": 1}) is None
    assert with_entry_layout({"CALL": 1, "SETUP_WITH": 264}) is None
    assert with_entry_layout(opcode.opmap) == LAYOUT  # this interpreter's, as found at import


_UNKNOWN_LAYOUT = """
import opcode, warnings
for name in ("BEFORE_WITH", "SETUP_WITH", "LOAD_SPECIAL"):
    opcode.opmap.pop(name, None)
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import watchdog_timeout
    from watchdog_timeout import TimeoutExpired, deadline, timeout
    for _ in range(3):
        try:
            with deadline(0.05):
                while True:
                    pass
        except TimeoutExpired:
            pass
    timeout(1)(len)("abc")
print(len(caught), caught[0].category.__name__, caught[0].filename)
"""


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.9/3.10 need SETUP_WITH elsewhere")
def test_an_unknown_layout_warns_once_at_the_users_import_and_deadlines_still_fire() -> None:
    done = run_python(_UNKNOWN_LAYOUT)
    assert done.stdout.split() == ["1", "RuntimeWarning", "<string>"], done.stderr


def test_with_entry_3_14_is_the_call_right_after_load_special_enter() -> None:
    opmap = _OPMAP_314
    # LOAD_SPECIAL 1 (__exit__), LOAD_SPECIAL 0 (__enter__), CALL 0, POP_TOP, CALL 0
    code = _code((92, 1), (92, 0), (52, 0), (31, 0), (52, 0))
    assert is_with_entry_at(code, 4, opmap, "LOAD_SPECIAL")  # the CALL of __enter__
    assert not is_with_entry_at(code, 2, opmap, "LOAD_SPECIAL")  # LOAD_SPECIAL itself
    assert not is_with_entry_at(code, 8, opmap, "LOAD_SPECIAL")  # a CALL after POP_TOP
    exit_call = _code((92, 1), (52, 0))  # LOAD_SPECIAL __exit__ then a call: not an entry
    assert not is_with_entry_at(exit_call, 2, opmap, "LOAD_SPECIAL")
    with_args = _code((92, 0), (52, 1))  # CALL 1 is not __enter__()
    assert not is_with_entry_at(with_args, 2, opmap, "LOAD_SPECIAL")


def test_with_entry_older_layouts_and_prefixes() -> None:
    assert is_with_entry_at(_code((53, 0)), 0, _OPMAP_313, "BEFORE_WITH")
    assert not is_with_entry_at(_code((171, 0)), 0, _OPMAP_313, "BEFORE_WITH")
    # 3.9/3.10 leave f_lasti on an EXTENDED_ARG prefix of SETUP_WITH.
    assert is_with_entry_at(_code((144, 1), (143, 4)), 0, _OPMAP_310, "SETUP_WITH")


def test_unknown_layout_recognises_no_with_entry() -> None:
    # The safe fallback: no block known from frames (the scope's exit alone bounds
    # it); the module warns once at import on such an interpreter.
    assert not is_with_entry_at(_code((53, 0)), 0, _OPMAP_313, None)


def test_with_frame_finds_the_with_statement_past_enter_methods() -> None:
    seen: list[FrameType | None] = []

    class Inner:
        def __enter__(self) -> None:
            seen.append(with_frame(sys._getframe(1)))

        def __exit__(self, *exc_info: object) -> None:
            return None

    class Outer:
        def __enter__(self) -> None:
            Inner().__enter__()  # entered by a user's __enter__, not by a with

        def __exit__(self, *exc_info: object) -> None:
            return None

    with Inner():
        pass
    with Outer():
        pass
    Inner().__enter__()  # no with statement at all
    here = sys._getframe()
    assert seen == [here, here, None]
