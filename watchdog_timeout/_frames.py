"""Where a frame is in its code: inside the ``with`` block of a scope, or past it.

Design notes
------------
An interrupt must land inside the block it was meant for, and a frame on the stack
is not enough to know that: the frame that entered a scope goes on running after
the block (or after an exception skipped the block's ``__exit__``).

What a block is: the region of code whose exceptions reach one handler. A scope
records ``f_lasti`` of the frame that entered it (the ``BEFORE_WITH`` or
``SETUP_WITH`` instruction, or a call such as ``ExitStack.enter_context``); the
frame is inside the block while an exception raised at its current instruction
would reach that block's handler.

- CPython 3.11+: the code object's exception table maps instruction ranges to
  handlers; follow handler to handler (nested handlers sit inside the block, some
  of them moved to the end of the code object) until the block's own handler.
- CPython 3.9/3.10: the frame's live block stack says which blocks are open, but
  Python does not expose it: it is read through ctypes from the frame struct, whose
  layout is fixed for those two versions.
- Elsewhere (PyPy): a frame on the stack counts as inside.

CPython 3.11+ can leave the back-edge jump of a loop written directly in a
``with`` or ``try`` outside the block's exception-table range. 3.11 and 3.12 look
the handler up after jumping, and are safe; 3.13 checks for interrupts before the
jump, so an interrupt raised there escapes the block without its ``__exit__``
(python/cpython#130279; measured: 40 of 40 for ``while cond:`` loops).
``position()`` reports such a jump as EDGE, so that the interrupt is sent a moment
later, when the loop is back inside the block; unless that jump is the loop's only
check point (``edge_is_the_only_check_point``): then it is sent there all the same,
or the loop could never be stopped, and the block's handler is skipped.

Up to 3.12 a thread that paused for the GIL raises a pending interrupt where it
paused; 3.13 reads its "eval breaker" before pausing and raises at the *next*
check point (measured: every time). ``landing()`` follows the bytecode from the
pause to every check point it can reach next.
"""

from __future__ import annotations

import enum
import opcode
import sys
from collections.abc import Set as AbstractSet
from types import CodeType, FrameType
from typing import Any, Optional

from ._bytecode import (
    GENERATOR_FLAGS,
    LAYOUT,
    Table,
    back_jumps_of,
    exception_table,
    handler_at,
    instruction_at,
    instructions,
    is_generator,
    is_with_entry,
    is_with_entry_at,
    next_check_points,
    next_offset,
    skip_prefixes,
)

__all__ = (
    "EDGE",
    "INSIDE",
    "LAZY",
    "OUTSIDE",
    "Marker",
    "Where",
    "edge_escapes",
    "edge_is_the_only_check_point",
    "marker_at_enter",
    "may_come_back",
    "landing",
    "position",
    "resolve_marker",
    "user_frame",
    "with_frame",
)


class Where(enum.Enum):
    """What a look at a thread says: where it is relative to a block, and what to do.

    INSIDE, EDGE and OUTSIDE: where a frame is relative to a block (``position``,
    ``landing``); DELIVER, DEFER and GONE: what the sender makes of a whole stack
    (``_sender.locate``).
    """

    INSIDE = "inside"
    EDGE = "edge"
    OUTSIDE = "outside"
    DELIVER = "deliver"
    DEFER = "defer"
    GONE = "gone"


INSIDE, EDGE, OUTSIDE = Where.INSIDE, Where.EDGE, Where.OUTSIDE

_EXCEPTION_TABLE = sys.version_info >= (3, 11)
_BLOCK_STACK = sys.implementation.name == "cpython" and sys.version_info < (3, 11)
if _BLOCK_STACK:
    import importlib.util

    # An interpreter built without ctypes: frames count as inside.
    _BLOCK_STACK = importlib.util.find_spec("ctypes") is not None
_HANDLER_UNIT = 2 if sys.version_info >= (3, 10) else 1  # 3.10 counts instructions


#: What identifies a block: the handler offset, or None for "the whole frame".
Marker = Optional[int]
#: A marker that ``resolve_marker`` can compute later from the code and ``f_lasti``.
LAZY = -1
_resolved: dict[tuple[CodeType, int], Marker] = {}


def may_come_back(frame: FrameType | None) -> bool:
    """Whether ``frame``, off the stack, may come back: a suspended generator's.

    Any other frame that left the stack is done, and so is every block in it.
    """
    return frame is not None and is_generator(frame.f_code)


def with_frame(
    caller: FrameType, transparent: AbstractSet[CodeType] = frozenset()
) -> FrameType | None:
    """The frame whose ``with`` statement a context manager called from ``caller`` serves.

    The innermost frame, from ``caller`` outwards, that is entering a ``with`` block:
    the caller itself for ``with deadline():``; its caller for a user's context
    manager (or subclass) whose ``__enter__`` enters the scope; the user's frame for
    a ``@contextmanager`` generator. contextlib's frames and ``transparent`` code are
    passed by. None when no frame is entering a ``with`` (``ExitStack.enter_context``
    called in a block, a manual ``__enter__()``): then the scope's block is not known
    from frames, and the scope is bounded by its own exit alone.
    """
    code = caller.f_code
    if (
        not code.co_flags & GENERATOR_FLAGS
        and code not in transparent
        and is_with_entry(code, caller.f_lasti)
    ):
        return caller  # ``with deadline():`` itself: the common case, first
    frame = _past_contextlib(caller, transparent)
    while frame is not None:
        if is_with_entry(frame.f_code, frame.f_lasti):
            return frame
        frame = _past_contextlib(frame.f_back, transparent)
    return None


def user_frame(
    caller: FrameType, transparent: AbstractSet[CodeType] = frozenset()
) -> FrameType | None:
    """The innermost frame, from ``caller`` outwards, that is neither contextlib's nor
    ``transparent``: whose code entered the scope (``stack.enter_context(...)``)."""
    return _past_contextlib(caller, transparent)


def _past_contextlib(
    frame: FrameType | None, transparent: AbstractSet[CodeType]
) -> FrameType | None:
    # ``frame`` or the first frame outwards that is not contextlib's, nor a
    # @contextmanager body that contextlib drives, nor ``transparent`` code.
    contextlib_file = getattr(sys.modules.get("contextlib"), "__file__", None)
    while frame is not None:
        code = frame.f_code
        back = frame.f_back
        if not (
            code in transparent
            or code.co_filename == contextlib_file
            or (
                code.co_flags & GENERATOR_FLAGS
                and back is not None
                and back.f_code.co_filename == contextlib_file
            )
        ):
            return frame
        frame = back
    return None


def resolve_marker(code: CodeType, lasti: int) -> Marker:
    """The marker of the block entered at ``lasti`` of ``code``, for a LAZY marker."""
    lasti = skip_prefixes(code, lasti)
    key = (code, lasti)
    if key in _resolved:
        return _resolved[key]
    marker: Marker = None
    if _EXCEPTION_TABLE:
        table = exception_table(code)
        # After the with-entry the block starts at the next instruction; a call
        # (such as ExitStack.enter_context) sits inside the block that holds the scope.
        opname = opcode.opname[code.co_code[lasti]]
        if opname == "BEFORE_WITH":
            lasti += 2
        elif LAYOUT == "LOAD_SPECIAL" and is_with_entry_at(
            code.co_code, lasti, opcode.opmap, LAYOUT
        ):
            lasti = next_offset(code, lasti)  # past CALL and its caches
        marker = handler_at(table, lasti)
    elif _BLOCK_STACK:
        instruction = instruction_at(code, lasti)
        if instruction is not None:
            marker = int(instruction.argval) // _HANDLER_UNIT
    _resolved[key] = marker
    return marker


if _BLOCK_STACK:
    _SETUP_FINALLY = opcode.opmap["SETUP_FINALLY"]

    _frame_struct_type: Any = None

    def _frame_struct() -> Any:
        """The ctypes layout of a 3.9/3.10 frame, built on first use (ctypes costs an import)."""
        global _frame_struct_type
        if _frame_struct_type is None:
            import ctypes  # noqa: PLC0415

            class _TryBlock(ctypes.Structure):
                _fields_ = [
                    ("b_type", ctypes.c_int),
                    ("b_handler", ctypes.c_int),
                    ("b_level", ctypes.c_int),
                ]

            _P = ctypes.c_void_p
            _head: list[tuple[str, Any]] = [
                ("ob_refcnt", ctypes.c_ssize_t),
                ("ob_type", _P),
                ("ob_size", ctypes.c_ssize_t),
                ("f_back", _P),
                ("f_code", _P),
                ("f_builtins", _P),
                ("f_globals", _P),
                ("f_locals", _P),
                ("f_valuestack", _P),
            ]
            _middle: list[tuple[str, Any]]
            if sys.version_info < (3, 10):
                _middle = [("f_stacktop", _P), ("f_trace", _P)]
            else:
                _middle = [("f_trace", _P), ("f_stackdepth", ctypes.c_int)]

            class _FrameStruct(ctypes.Structure):
                _fields_ = [  # Include/cpython/frameobject.h of 3.9 and 3.10
                    *_head,
                    *_middle,
                    ("f_trace_lines", ctypes.c_char),
                    ("f_trace_opcodes", ctypes.c_char),
                    ("f_gen", _P),
                    ("f_lasti", ctypes.c_int),
                    ("f_lineno", ctypes.c_int),
                    ("f_iblock", ctypes.c_int),
                    ("f_state", ctypes.c_char),
                    ("f_blockstack", _TryBlock * 20),
                ]

            _frame_struct_type = _FrameStruct
        return _frame_struct_type

    def _open_handlers(frame: FrameType) -> list[int]:
        struct = _frame_struct().from_address(id(frame))
        blocks = struct.f_blockstack
        return [
            blocks[i].b_handler
            for i in range(min(struct.f_iblock, 20))
            if blocks[i].b_type == _SETUP_FINALLY
        ]

    _SETUP_WITH = opcode.opmap["SETUP_WITH"]

    def marker_at_enter(frame: FrameType) -> Marker:
        """The marker of the block ``frame`` is entering, or LAZY to resolve later."""
        code = frame.f_code
        if code.co_code[skip_prefixes(code, frame.f_lasti)] == _SETUP_WITH:
            return LAZY  # SETUP_WITH pushes its block after __enter__ returns
        # A call such as ExitStack.enter_context: the innermost block open now.
        handlers = _open_handlers(frame)
        return handlers[-1] if handlers else None

    def position(frame: FrameType, marker: Marker) -> Where:
        """Whether ``frame`` is INSIDE the block identified by ``marker``, or OUTSIDE."""
        return INSIDE if marker is None or marker in _open_handlers(frame) else OUTSIDE

    def edge_escapes(code: CodeType, offset: int) -> bool:
        """Whether an exception raised at ``offset`` skips a handler (never: block stacks)."""
        return False

elif _EXCEPTION_TABLE:

    def marker_at_enter(frame: FrameType) -> Marker:
        """The marker of the block ``frame`` is entering, or LAZY to resolve later."""
        return LAZY

    def _reaches(table: Table, offset: int, marker: int) -> bool:
        # Follow handler to handler: nested handlers sit inside the block.
        for _ in range(len(table) + 1):  # bounded: handlers lead outwards
            handler = handler_at(table, offset)
            if handler == marker:
                return True
            if handler is None or handler == offset:
                return False
            offset = handler
        return False

    # 3.11/3.12 check for interrupts after a backward jump has jumped: the handler
    # is looked up at the instruction before the target. 3.13 checks before it
    # jumps, at the jump itself, which the table can miss.
    _CHECKS_AFTER_JUMPING = sys.version_info < (3, 13)

    def _position_at(code: CodeType, offset: int, marker: Marker) -> Where:
        if marker is None:
            return INSIDE
        table = exception_table(code)
        target = back_jumps_of(code).get(offset)
        if target is not None and _CHECKS_AFTER_JUMPING:
            offset = target - 2
        if _reaches(table, offset, marker):
            return INSIDE
        if target is not None and _reaches(table, target, marker):
            return EDGE
        return OUTSIDE

    def position(frame: FrameType, marker: Marker) -> Where:
        """Whether ``frame`` is INSIDE the block identified by ``marker``, OUTSIDE it,
        or at an EDGE: a loop's back-edge that the block's exception range misses."""
        return _position_at(frame.f_code, frame.f_lasti, marker)

    def edge_escapes(code: CodeType, offset: int) -> bool:
        """Whether an exception raised at ``offset`` skips a handler around its loop.

        True at a loop's back-edge whose exception-table entry differs from the loop
        body's: an interrupt raised there skips the ``except``/``finally``/``__exit__``
        that encloses the loop (python/cpython#130279, #108214), in any frame.
        """
        target = back_jumps_of(code).get(offset)
        if target is None:
            return False
        table = exception_table(code)
        looked_up = target - 2 if _CHECKS_AFTER_JUMPING else offset
        return handler_at(table, looked_up) != handler_at(table, target)

else:

    def edge_escapes(code: CodeType, offset: int) -> bool:
        """Whether an exception raised at ``offset`` skips a handler (never, here)."""
        return False

    def marker_at_enter(frame: FrameType) -> Marker:
        """The marker of the block ``frame`` is entering, or LAZY to resolve later."""
        return None

    def position(frame: FrameType, marker: Marker) -> Where:
        """Whether ``frame`` is INSIDE the block identified by ``marker`` (always, here)."""
        return INSIDE


_hopeless: dict[tuple[CodeType, int], bool] = {}


def edge_is_the_only_check_point(code: CodeType, offset: int) -> bool:
    """Whether the loop whose back-edge is at ``offset`` has no other check point.

    Then waiting for a safer landing point is futile: the interrupt can only land
    on the back-edge (``while n: n -= 1``).
    """
    key = (code, offset)
    found = _hopeless.get(key)
    if found is None:
        target = back_jumps_of(code).get(offset)
        found = target is not None and not any(
            target <= instruction.offset < offset
            and (instruction.opname.startswith("CALL") or "JUMP_BACKWARD" in instruction.opname)
            for instruction in instructions(code)
        )
        _hopeless[key] = found
    return found


#: Up to 3.12 a paused thread raises a pending interrupt where it paused; 3.13 at
#: the next check point it reaches.
_RAISES_AFTER_PAUSE = sys.version_info >= (3, 13)


def landing(
    top: FrameType, boundary: FrameType | None, marker: Marker, ours: bool = False
) -> Where:
    """Where an interrupt sent now, to a thread paused in ``top``, will land.

    INSIDE when every next landing point lies in the block of ``boundary`` and none
    is a back-edge that escapes a handler of its frame (``edge_escapes``), in any
    frame from ``top`` down to ``boundary``; EDGE otherwise. Up to 3.12 the thread
    raises where it paused. ``ours``: ``boundary`` is our worker's frame that calls
    the limited code; an interrupt landing there is handled by it. ``boundary``
    None: the block is not known from frames (see ``with_frame``).
    """
    if not _RAISES_AFTER_PAUSE:
        if top is not boundary and edge_escapes(top.f_code, top.f_lasti):
            return EDGE
        return INSIDE if boundary is None or ours else position(boundary, marker)
    frame: FrameType | None = top
    while frame is not None:
        code = frame.f_code
        paused = frame.f_lasti
        points, leaves = next_check_points(code, paused)
        if frame is top and opcode.opname[code.co_code[paused]].startswith("CALL"):
            # Blocked in a C call, it raises when the call returns: here.
            points = (*points, paused)
        if frame is boundary:
            if ours:
                return INSIDE
            if _position_at(code, paused, marker) is OUTSIDE:
                return OUTSIDE  # past its block: calling its exit, or after it
            if leaves or any(_position_at(code, p, marker) is not INSIDE for p in points):
                return EDGE
            return INSIDE
        if any(edge_escapes(code, p) for p in points):
            return EDGE
        if not leaves:
            # A callee of the block's frame: inside the block if the call that runs
            # it is (not a call past the block, once its exit was skipped).
            return INSIDE if boundary is None or ours else position(boundary, marker)
        frame = frame.f_back  # it may return first: look on in its caller
    return EDGE if boundary is not None else INSIDE
