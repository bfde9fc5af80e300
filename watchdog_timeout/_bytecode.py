"""What code objects say, computed once per code object: exception tables, loops'
back-edges, ``with`` entries and the check points a paused thread reaches next.

Pure analysis of bytecode (``dis``); ``_frames`` applies it to running frames.

``dis`` costs an import: ``load()`` imports it where a thread of the user's first
uses the library (``_registry.current_state``), in a thread of its own
(``_apart``), never on first use, which is often on the monitor, under its lock:
an import there waits for the interpreter's import locks, and on 3.9 a Ctrl-C in
the main thread's own import can leave one held for good.
"""

from __future__ import annotations

import opcode
import sys
import warnings
from collections.abc import Mapping
from types import CodeType
from typing import Any

from ._apart import run_apart

__all__ = (
    "GENERATOR_FLAGS",
    "LAYOUT",
    "Table",
    "back_jumps_of",
    "exception_table",
    "function_kind",
    "handler_at",
    "instruction_at",
    "instructions",
    "is_generator",
    "is_with_entry",
    "is_with_entry_at",
    "load",
    "next_check_points",
    "next_offset",
    "skip_prefixes",
    "with_entry_layout",
)


_dis: Any = None


def load() -> None:
    """Import ``dis``, once, before any analysis (in a thread of its own: ``run_apart``)."""
    if _dis is None:
        run_apart(_import_dis)


def _import_dis() -> None:
    global _dis
    import dis  # noqa: PLC0415 (a costly import, needed only once scopes are used)

    _dis = dis


def instructions(code: CodeType) -> Any:
    if _dis is None:
        _import_dis()  # (the library calls load() first; tests may not)
    return _dis.get_instructions(code)


# (start, end, target) in bytes, end exclusive.
Table = list[tuple[int, int, int]]
_tables: dict[CodeType, Table] = {}
# offset of each backward jump that checks for interrupts -> its target offset.
_back_jump_cache: dict[CodeType, dict[int, int]] = {}


def exception_table(code: CodeType) -> Table:
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


def handler_at(table: Table, offset: int) -> int | None:
    for start, end, target in table:
        if start <= offset < end:
            return target
    return None


def back_jumps_of(code: CodeType) -> dict[int, int]:
    jumps = _back_jump_cache.get(code)
    if jumps is None:
        jumps = _back_jump_cache[code] = {
            instruction.offset: int(instruction.argval)
            for instruction in instructions(code)
            if "JUMP_BACKWARD" in instruction.opname and "NO_INTERRUPT" not in instruction.opname
        }
    return jumps


def instruction_at(code: CodeType, offset: int) -> Any:
    for instruction in instructions(code):
        if instruction.offset == offset:
            return instruction
    return None


_EXTENDED_ARG = opcode.opmap.get("EXTENDED_ARG", -1)


def skip_prefixes(code: CodeType, lasti: int) -> int:
    # 3.9/3.10 leave f_lasti on an EXTENDED_ARG prefix of the instruction it runs.
    co_code = code.co_code
    while 0 <= lasti < len(co_code) - 2 and co_code[lasti] == _EXTENDED_ARG:
        lasti += 2
    return lasti


# --- with statements ----------------------------------------------------------------


#: How this interpreter compiles the entry of a ``with`` statement: "BEFORE_WITH"
#: (3.11-3.13), "SETUP_WITH" (3.9/3.10), "LOAD_SPECIAL" (3.14: ``LOAD_SPECIAL
#: __enter__`` then ``CALL 0``), or None for a layout this module does not know.
def with_entry_layout(opmap: Mapping[str, int]) -> str | None:
    """The ``with``-entry layout that an interpreter with opcodes ``opmap`` uses.

    Real opcodes only: since 3.12 ``opmap`` also lists the compiler's pseudo
    instructions (256 and up), ``SETUP_WITH`` among them (3.13: 266; 3.14: 264,
    where the entry is ``LOAD_SPECIAL``).
    """
    for layout in ("BEFORE_WITH", "SETUP_WITH", "LOAD_SPECIAL"):
        if opmap.get(layout, _PSEUDO) < _PSEUDO:
            return layout
    return None


_PSEUDO = 256  # the first pseudo instruction's number (opcode.MIN_PSEUDO_OPCODE, 3.12+)


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


def _importers_level() -> int:
    # The stack level of the first frame outside this package: the user's import,
    # which the warning names (warnings counts no frame of importlib's).
    level, frame = 1, sys._getframe(1)
    package = __name__.rpartition(".")[0]
    while frame.f_back is not None:
        if frame.f_globals.get("__name__", "").partition(".")[0] == package:
            level += 1
        elif not frame.f_code.co_filename.startswith("<frozen importlib"):
            break
        frame = frame.f_back
    return level


LAYOUT = with_entry_layout(opcode.opmap) if sys.implementation.name == "cpython" else None
if LAYOUT is None and sys.implementation.name == "cpython":
    warnings.warn(
        f"watchdog_timeout does not know how CPython {sys.version.split()[0]} compiles "
        "`with` statements: deadlines cannot tell where their block ends, so an interrupt "
        "is guarded only by the scope's exit",
        RuntimeWarning,
        stacklevel=_importers_level(),
    )


_with_entries: dict[tuple[CodeType, int], bool] = {}


def is_with_entry(code: CodeType, lasti: int) -> bool:
    """Whether the instruction at ``lasti`` of ``code`` is calling a ``__enter__``."""
    key = (code, lasti)
    found = _with_entries.get(key)
    if found is None:  # once per call site
        found = _with_entries[key] = is_with_entry_at(code.co_code, lasti, opcode.opmap, LAYOUT)
    return found


GENERATOR_FLAGS = 0x20 | 0x80 | 0x100 | 0x200  # CO_GENERATOR, CO_COROUTINE, ...


def is_generator(code: CodeType) -> bool:
    """Whether frames of ``code`` can be suspended (generators, coroutines)."""
    return bool(code.co_flags & GENERATOR_FLAGS)


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


def next_offset(code: CodeType, lasti: int) -> int:
    found = False
    for instruction in instructions(code):
        if found:
            return int(instruction.offset)
        found = instruction.offset == lasti
    return lasti + 2


# --- 3.13+: the check points a paused thread reaches next ------------------------

_CHECK_POINTS = frozenset(("CALL", "CALL_KW", "CALL_FUNCTION_EX", "JUMP_BACKWARD", "RESUME"))
_UNCONDITIONAL = frozenset(("JUMP_FORWARD", "JUMP_BACKWARD_NO_INTERRUPT", "JUMP"))
_LEAVES = frozenset(
    ("RETURN_VALUE", "RETURN_CONST", "YIELD_VALUE", "RERAISE", "RAISE_VARARGS", "END_ASYNC_FOR")
)
# (code, paused offset) -> (offsets of the next check points, whether the frame can
# be left first)
_next_points: dict[tuple[CodeType, int], tuple[tuple[int, ...], bool]] = {}


def next_check_points(code: CodeType, paused: int) -> tuple[tuple[int, ...], bool]:
    """The next check points a thread paused at ``paused`` reaches (3.13+), and whether
    it may leave the frame first (return, raise, yield) before any of them."""
    key = (code, paused)
    found = _next_points.get(key)
    if found is not None:
        return found
    listed = list(instructions(code))
    index_of = {instruction.offset: i for i, instruction in enumerate(listed)}
    start = index_of.get(paused)
    points: set[int] = set()
    leaves = start is None
    if start is not None:
        first = listed[start]
        # 3.13 checks before JUMP_BACKWARD jumps, and after a call returns.
        pending = [index_of[first.argval] if first.opname == "JUMP_BACKWARD" else start + 1]
        seen: set[int] = set()
        while pending:
            i = pending.pop()
            while i < len(listed) and i not in seen:
                seen.add(i)
                instruction = listed[i]
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
                if i >= len(listed):
                    leaves = True
    found = _next_points[key] = (tuple(sorted(points)), leaves)
    return found
