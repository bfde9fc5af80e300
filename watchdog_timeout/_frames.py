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
later, when the loop is back inside the block.

Up to 3.12 a thread that paused for the GIL raises a pending interrupt where it
paused; 3.13 reads its "eval breaker" before pausing and raises at the *next*
check point (measured: every time). ``landing()`` follows the bytecode from the
pause to every check point it can reach next.
"""

from __future__ import annotations

import enum
import opcode
import sys
import warnings
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from types import CodeType, FrameType
from typing import Any, Optional

__all__ = (
    "EDGE",
    "INSIDE",
    "LAZY",
    "OUTSIDE",
    "Marker",
    "Where",
    "edge_escapes",
    "edge_is_the_only_check_point",
    "function_kind",
    "is_with_entry",
    "marker_at_enter",
    "may_be_exiting",
    "landing",
    "position",
    "resolve_marker",
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


def _instructions(code: CodeType) -> Any:
    import dis  # noqa: PLC0415 (a costly import, needed only when code is analysed)

    return dis.get_instructions(code)


# (start, end, target) in bytes, end exclusive.
_Table = list[tuple[int, int, int]]
_tables: dict[CodeType, _Table] = {}
# offset of each backward jump that checks for interrupts -> its target offset.
_back_jumps: dict[CodeType, dict[int, int]] = {}

#: What identifies a block: the handler offset, or None for "the whole frame".
Marker = Optional[int]
#: A marker that ``resolve_marker`` can compute later from the code and ``f_lasti``.
LAZY = -1
_resolved: dict[tuple[CodeType, int], Marker] = {}


def _parse_exception_table(code: CodeType) -> _Table:
    table = _tables.get(code)
    if table is None:
        raw = iter(code.co_exceptiontable)  # type: ignore[attr-defined]
        table = []

        def varint() -> int:
            byte: int = next(raw)
            value = byte & 63
            while byte & 64:
                byte = next(raw)
                value = (value << 6) | (byte & 63)
            return value

        try:
            while True:
                start = varint() * 2
                end = start + varint() * 2
                target = varint() * 2
                varint()  # depth and lasti flag
                table.append((start, end, target))
        except StopIteration:
            pass
        _tables[code] = table
    return table


def _handler_at(table: _Table, offset: int) -> int | None:
    for start, end, target in table:
        if start <= offset < end:
            return target
    return None


_EXITING = frozenset(
    name
    for name in opcode.opname
    if name.startswith(("CALL", "PRECALL"))
    or name in ("WITH_EXCEPT_START", "BEFORE_WITH", "SETUP_WITH", "CACHE")
    # 3.9/3.10 check for interrupts between POP_BLOCK and the call of __exit__.
    or (_BLOCK_STACK and name in ("POP_BLOCK", "LOAD_CONST", "DUP_TOP", "ROT_TWO"))
)


def may_be_exiting(frame: FrameType) -> bool:
    """Whether ``frame`` may be on its way into a block's ``__exit__``.

    ``sys._current_frames()`` does not show a callee's frame before it is complete,
    so a thread about to run ``__exit__`` shows its caller at the call instruction
    (or, on 3.9/3.10, at the instructions that prepare the call).
    """
    lasti = frame.f_lasti
    return lasti >= 0 and opcode.opname[frame.f_code.co_code[lasti]] in _EXITING


def _back_jumps_of(code: CodeType) -> dict[int, int]:
    jumps = _back_jumps.get(code)
    if jumps is None:
        jumps = _back_jumps[code] = {
            instruction.offset: int(instruction.argval)
            for instruction in _instructions(code)
            if "JUMP_BACKWARD" in instruction.opname and "NO_INTERRUPT" not in instruction.opname
        }
    return jumps


def _instruction_at(code: CodeType, offset: int) -> Any:
    for instruction in _instructions(code):
        if instruction.offset == offset:
            return instruction
    return None


_EXTENDED_ARG = opcode.opmap.get("EXTENDED_ARG", -1)


def _skip_prefixes(code: CodeType, lasti: int) -> int:
    # 3.9/3.10 leave f_lasti on an EXTENDED_ARG prefix of the instruction it runs.
    co_code = code.co_code
    while 0 <= lasti < len(co_code) - 2 and co_code[lasti] == _EXTENDED_ARG:
        lasti += 2
    return lasti


# --- which frame runs the with statement of a scope --------------------------------


#: How this interpreter compiles the entry of a ``with`` statement: "BEFORE_WITH"
#: (3.11-3.13), "SETUP_WITH" (3.9/3.10), "LOAD_SPECIAL" (3.14: ``LOAD_SPECIAL
#: __enter__`` then ``CALL 0``), or None for a layout this module does not know.
def with_entry_layout(opmap: Mapping[str, int]) -> str | None:
    """The ``with``-entry layout that an interpreter with opcodes ``opmap`` uses."""
    for layout in ("BEFORE_WITH", "SETUP_WITH", "LOAD_SPECIAL"):
        if layout in opmap:
            return layout
    return None


def is_with_entry_at(
    co_code: bytes, lasti: int, opmap: Mapping[str, int], layout: str | None
) -> bool:
    """Whether the instruction at ``lasti`` of ``co_code`` is calling a ``__enter__``.

    Pure, for testing the layouts of interpreters that are not installed.
    """
    if layout is None or not 0 <= lasti < len(co_code):
        return False
    extended = opmap.get("EXTENDED_ARG", -1)
    while lasti < len(co_code) - 2 and co_code[lasti] == extended:
        lasti += 2  # 3.9/3.10 leave f_lasti on a prefix
    opcode = co_code[lasti]
    if layout != "LOAD_SPECIAL":
        return opcode == opmap[layout]
    # 3.14: ``LOAD_SPECIAL 0`` (__enter__) right before ``CALL 0``.
    return (
        opcode == opmap.get("CALL")
        and co_code[lasti + 1] == 0
        and lasti >= 2
        and co_code[lasti - 2] == opmap["LOAD_SPECIAL"]
        and co_code[lasti - 1] == 0
    )


_LAYOUT = with_entry_layout(opcode.opmap) if sys.implementation.name == "cpython" else None
if _LAYOUT is None and sys.implementation.name == "cpython":
    warnings.warn(
        f"watchdog_timeout does not know how CPython {sys.version.split()[0]} compiles "
        "`with` statements: deadlines cannot tell where their block ends, so an interrupt "
        "is guarded only by the scope's exit",
        RuntimeWarning,
        stacklevel=2,
    )


_with_entries: dict[tuple[CodeType, int], bool] = {}


def is_with_entry(code: CodeType, lasti: int) -> bool:
    """Whether the instruction at ``lasti`` of ``code`` is calling a ``__enter__``."""
    key = (code, lasti)
    found = _with_entries.get(key)
    if found is None:  # once per call site
        found = _with_entries[key] = is_with_entry_at(code.co_code, lasti, opcode.opmap, _LAYOUT)
    return found


_GENERATOR_FLAGS = 0x20 | 0x80 | 0x100 | 0x200  # CO_GENERATOR, CO_COROUTINE, ...
_CO_GENERATOR, _CO_COROUTINE, _CO_ASYNC_GENERATOR = 0x20, 0x80, 0x200


def function_kind(function: object) -> str:
    """ "coroutine", "generator", "async generator" or "plain", as ``inspect`` would say.

    Without importing ``inspect`` (a costly import) unless the program already has:
    only then can a function be marked with ``inspect.markcoroutinefunction``.
    """
    inspect = sys.modules.get("inspect")
    if inspect is not None:
        if inspect.iscoroutinefunction(function):
            return "coroutine"
        if inspect.isasyncgenfunction(function):
            return "async generator"
        return "generator" if inspect.isgeneratorfunction(function) else "plain"
    functools = sys.modules.get("functools")
    for _ in range(100):  # bounded: unwrap methods and partials
        if functools is not None and isinstance(function, functools.partial):
            function = function.func
        elif hasattr(function, "__func__"):
            function = function.__func__
        else:
            break
    code = getattr(function, "__code__", None)
    flags = code.co_flags if isinstance(code, CodeType) else 0
    if flags & _CO_COROUTINE:
        return "coroutine"
    if flags & _CO_ASYNC_GENERATOR:
        return "async generator"
    return "generator" if flags & _CO_GENERATOR else "plain"


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
        not code.co_flags & _GENERATOR_FLAGS
        and code not in transparent
        and is_with_entry(code, caller.f_lasti)
    ):
        return caller  # ``with deadline():`` itself: the common case, first
    contextlib = sys.modules.get("contextlib")  # none of its frames without it
    contextlib_file = getattr(contextlib, "__file__", None)
    frame: FrameType | None = caller
    while frame is not None:
        code = frame.f_code
        back = frame.f_back
        if (
            code in transparent
            or code.co_filename == contextlib_file
            or (
                code.co_flags & _GENERATOR_FLAGS
                and back is not None
                and back.f_code.co_filename == contextlib_file
            )
        ):
            frame = back  # contextlib and the @contextmanager body it drives
            continue
        if is_with_entry(code, frame.f_lasti):
            return frame
        frame = back
    return None


def _next_offset(code: CodeType, lasti: int) -> int:
    found = False
    for instruction in _instructions(code):
        if found:
            return int(instruction.offset)
        found = instruction.offset == lasti
    return lasti + 2


def resolve_marker(code: CodeType, lasti: int) -> Marker:
    """The marker of the block entered at ``lasti`` of ``code``, for a LAZY marker."""
    lasti = _skip_prefixes(code, lasti)
    key = (code, lasti)
    if key in _resolved:
        return _resolved[key]
    marker: Marker = None
    if _EXCEPTION_TABLE:
        table = _parse_exception_table(code)
        # After the with-entry the block starts at the next instruction; a call
        # (such as ExitStack.enter_context) sits inside the block that holds the scope.
        opname = opcode.opname[code.co_code[lasti]]
        if opname == "BEFORE_WITH":
            lasti += 2
        elif _LAYOUT == "LOAD_SPECIAL" and is_with_entry_at(
            code.co_code, lasti, opcode.opmap, _LAYOUT
        ):
            lasti = _next_offset(code, lasti)  # past CALL and its caches
        marker = _handler_at(table, lasti)
    elif _BLOCK_STACK:
        instruction = _instruction_at(code, lasti)
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
        if code.co_code[_skip_prefixes(code, frame.f_lasti)] == _SETUP_WITH:
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

    def _reaches(table: _Table, offset: int, marker: int) -> bool:
        # Follow handler to handler: nested handlers sit inside the block.
        for _ in range(len(table) + 1):  # bounded: handlers lead outwards
            handler = _handler_at(table, offset)
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
        table = _parse_exception_table(code)
        target = _back_jumps_of(code).get(offset)
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
        target = _back_jumps_of(code).get(offset)
        if target is None:
            return False
        table = _parse_exception_table(code)
        looked_up = target - 2 if _CHECKS_AFTER_JUMPING else offset
        return _handler_at(table, looked_up) != _handler_at(table, target)

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
        target = _back_jumps_of(code).get(offset)
        found = target is not None and not any(
            target <= instruction.offset < offset
            and (instruction.opname.startswith("CALL") or "JUMP_BACKWARD" in instruction.opname)
            for instruction in _instructions(code)
        )
        _hopeless[key] = found
    return found


# --- 3.13+: where a pending interrupt lands after a pause --------------------

_RAISES_AFTER_PAUSE = sys.version_info >= (3, 13)
_CHECK_POINTS = frozenset(("CALL", "CALL_KW", "CALL_FUNCTION_EX", "JUMP_BACKWARD", "RESUME"))
_UNCONDITIONAL = frozenset(("JUMP_FORWARD", "JUMP_BACKWARD_NO_INTERRUPT", "JUMP"))
_LEAVES = frozenset(
    ("RETURN_VALUE", "RETURN_CONST", "YIELD_VALUE", "RERAISE", "RAISE_VARARGS", "END_ASYNC_FOR")
)
# (code, paused offset) -> (offsets of the next check points, whether the frame can
# be left first)
_next_points: dict[tuple[CodeType, int], tuple[tuple[int, ...], bool]] = {}


def _next_check_points(code: CodeType, paused: int) -> tuple[tuple[int, ...], bool]:
    key = (code, paused)
    found = _next_points.get(key)
    if found is not None:
        return found
    instructions = list(_instructions(code))
    index_of = {instruction.offset: i for i, instruction in enumerate(instructions)}
    start = index_of.get(paused)
    points: set[int] = set()
    leaves = start is None
    if start is not None:
        first = instructions[start]
        # 3.13 checks before JUMP_BACKWARD jumps, and after a call returns.
        pending = [index_of[first.argval] if first.opname == "JUMP_BACKWARD" else start + 1]
        seen: set[int] = set()
        while pending:
            i = pending.pop()
            while i < len(instructions) and i not in seen:
                seen.add(i)
                instruction = instructions[i]
                name = instruction.opname
                if name in _CHECK_POINTS:
                    points.add(instruction.offset)
                    break
                if name in _LEAVES:
                    leaves = True
                    break
                if instruction.opcode in opcode.hasjrel or instruction.opcode in opcode.hasjabs:
                    target = index_of.get(instruction.argval)
                    if target is None:
                        leaves = True
                        break
                    if name in _UNCONDITIONAL:
                        i = target
                        continue
                    pending.append(target)
                i += 1
            else:
                if i >= len(instructions):
                    leaves = True
    found = _next_points[key] = (tuple(sorted(points)), leaves)
    return found


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
        points, leaves = _next_check_points(code, paused)
        if frame is top and opcode.opname[code.co_code[paused]].startswith("CALL"):
            # Blocked in a C call, it raises when the call returns: here.
            points = (*points, paused)
        if frame is boundary:
            if ours:
                return INSIDE
            if leaves or any(_position_at(code, p, marker) is not INSIDE for p in points):
                return EDGE
            return INSIDE
        if any(edge_escapes(code, p) for p in points):
            return EDGE
        if not leaves:
            return INSIDE  # a callee of the block's frame: inside the block
        frame = frame.f_back  # it may return first: look on in its caller
    return EDGE if boundary is not None else INSIDE
