"""The child's traceback, rebuilt in the caller as frames that tools can walk.

Design notes
------------
An exception raised in the child comes back pickled, and pickling drops its
``__traceback__``: the caller would see the exception raised in our code, with
the function's own frames only as text.

Things that don't work:

- Pickling the traceback: frames do not pickle (tblib rebuilds them from a
  dictionary of codes and line numbers, which is all we need as well).
- ``types.TracebackType(next, frame, lasti, lineno)`` with any frame at hand:
  tools read the file and function from ``tb_frame.f_code``, not from the
  traceback, and 3.11+ underlines the columns of ``tb_lasti`` in that code
  (``tb_lasti=-1`` prints an empty line of carets on 3.11 and 3.12).

Solution: the child sends ``(filename, lineno, name, module)`` per frame. The
caller compiles, per frame, a ``raise`` renamed to that function in that file,
placed at that line with no columns (3.11+: a location table of "line only"
entries; before: that many blank lines first), runs it once to get a real frame
of it, and links the frames with ``TracebackType``. ``traceback``, pytest,
debuggers' post-mortem listings and error reporters then show the function's
frames with their source lines, after the caller's own. A small rebuild of our
own rather than tblib: tblib would add a dependency to rebuild what fits in forty
lines, and we control what crosses (plain tuples).
"""

from __future__ import annotations

import sys
import traceback
import types

__all__ = ("Frames", "frames_of", "rebuild")

#: Per frame, outermost first: (filename, lineno, function name, module name).
Frames = tuple[tuple[str, int, str, str], ...]


def frames_of(exc: BaseException, skip_file: str) -> Frames:
    """The frames of ``exc``'s traceback, without the leading ones in ``skip_file``."""
    found: list[tuple[str, int, str, str]] = []
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        code = frame.f_code
        if not found and code.co_filename == skip_file:
            continue  # our own frame that made the call
        name = getattr(code, "co_qualname", code.co_name)
        module = frame.f_globals.get("__name__")
        found.append((code.co_filename, lineno or 0, name, str(module)))
    return tuple(found)


class _Here(Exception):
    """Raised by a compiled stand-in frame, to catch the frame."""


def rebuild(frames: Frames) -> types.TracebackType | None:
    """A traceback whose frames stand for ``frames`` (outermost first); None if empty."""
    tb: types.TracebackType | None = None
    for filename, lineno, name, module in reversed(frames):
        try:
            frame, lasti = _stand_in(filename, lineno, name, module)
            tb = types.TracebackType(tb, frame, lasti, lineno)
        except Exception:  # a name compile() refuses, say: leave that frame out
            continue
    return tb


def _stand_in(filename: str, lineno: int, name: str, module: str) -> tuple[types.FrameType, int]:
    """A real frame of code named ``name``, in ``filename``, stopped at ``lineno``."""
    short = name.rpartition(".")[2]
    if sys.version_info >= (3, 11):
        code = compile("raise _Here", filename, "exec")
        # Every instruction at ``lineno`` with no columns: nothing to underline.
        units = len(code.co_code) // 2
        table = b"".join(
            bytes((0x80 | _NO_COLUMNS << 3 | (min(8, units - start) - 1), 0))
            for start in range(0, units, 8)
        )
        code = code.replace(
            co_name=short, co_qualname=name, co_firstlineno=max(lineno, 1), co_linetable=table
        )
    else:
        code = compile("\n" * max(lineno - 1, 0) + "raise _Here", filename, "exec")
        code = code.replace(co_name=short)
    try:
        exec(code, {"__name__": module, "__file__": filename, "_Here": _Here})
    except _Here as caught:
        tb = caught.__traceback__
        assert tb is not None
        assert tb.tb_next is not None
        lasti = tb.tb_next.tb_lasti if sys.version_info >= (3, 11) else -1
        return tb.tb_next.tb_frame, lasti
    raise AssertionError("the stand-in frame did not raise")


#: The location-table entry kind "a line, no columns" (CPython 3.11+, Objects/locations.md).
_NO_COLUMNS = 13
