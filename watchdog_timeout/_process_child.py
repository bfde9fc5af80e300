"""What runs in the child process, and how calls and replies travel to and from it.

Design notes
------------
A child started by ``spawn`` or ``forkserver`` shares nothing with the caller:
the function, its arguments, its result and its exception all cross a socket as
pickles, and the child must be a tree the caller can stop and a process that
dies with it.

Things that don't work:

- Pickling a decorated module-level function: the name refers to the wrapper,
  and pickle refuses the original ("not the same object as module.f").
- ``PR_SET_PDEATHSIG`` alone: it fires when the parent *thread* exits, and the
  grandchildren of a dead child are still orphaned (``_process_tree`` kills them).
- Keeping forkserver's "alive" pipe, which every forkserver child inherits: the
  server (our parent, whose death kills us) would outlive the caller while we run.

Solution:

- Every child puts itself in its own process group, resets the Python signal
  handlers it inherited, ignores SIGINT (Ctrl-C reaches the parent, which kills
  the child) and asks for SIGKILL when its parent dies (forkserver's single
  thread, or the parent's main thread: the caller decides which). It lets go of
  forkserver's "alive" pipe, so that the server, and then the child, does die
  with the caller. It also makes itself a subreaper: orphans of its descendants
  are reparented to it rather than to init, so they stay in the tree that is
  killed at the deadline, and it reaps those that end in other process groups
  after each call (``_process_tree.reap_adopted``). This needs ctypes for
  ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` and ``prctl(PR_SET_CHILD_SUBREAPER)``,
  which neither ``os`` nor ``signal`` offers and which a process can only make
  for itself, so ctypes is imported here, in the child and on Linux only (the
  package's other ctypes users are ``_async_raise`` and ``_frames``).
- Calls travel as ``(module, qualname, co_name, co_firstlineno)``: the child
  follows the qualified name and then ``__wrapped__``/``__func__`` until it
  reaches the function whose code starts there (pebble's trampoline, without
  registering anything). What cannot be found that way (lambdas, closures,
  methods of local classes, an interactive ``__main__``) travels by value with
  cloudpickle, the serializer of loky, joblib, dask and ray, as do arguments and
  results that plain pickle refuses (instances of local classes). cloudpickle is
  imported only then: a module-level function with plain arguments never pays
  for it. The call is pickled in the caller first, before any child is used,
  and what cannot be pickled even by value is named: an argument, or a variable
  a closure takes along.
- Results and exceptions come back pickled. An exception comes with its
  frames, rebuilt in the caller after the caller's own (``_process_traceback``);
  if it was chained in the child, the child's whole traceback comes as text too
  and is attached as ``__cause__`` (a ``_ChildTraceback``, as
  ``concurrent.futures`` does). An exception that cannot travel becomes a
  ``RuntimeError`` that names its type and message.
- A pooled child says READY once started, then answers each call; with no call
  for ``idle_timeout`` it says BYE and exits (a call sent to it at that moment
  is never read). A child whose function calls ``os.fork`` answers once: the
  copy exits.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import multiprocessing.connection
import os
import pickle
import reprlib
import select
import signal
import sys
import threading
import traceback
import types
from typing import Any, Callable

from . import _delivery
from ._errors import TimeoutExpired, _Interrupt
from ._process_traceback import frames_of, rebuild
from ._process_tree import reap_adopted

__all__ = (
    "BYE",
    "READY",
    "detach_forkserver",
    "forked_main",
    "pack_call",
    "unpack_reply",
    "worker_main",
)

_PROTOCOL = pickle.HIGHEST_PROTOCOL
#: What a pooled child sends once it is started, and when it retires unasked.
READY, BYE = b"R", b"B"

#: What the child is told to call: ("ref", module, qualname, co_name, firstlineno),
#: ("method", bound_to, ref) or ("value", callable).
Target = tuple[Any, ...]


class _ChildTraceback(Exception):
    """The traceback of an exception raised in the child process, as text.

    Attached as ``__cause__`` of the exception re-raised in the caller.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


# --- what travels: the call ------------------------------------------------------


def pack_call(
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str,
    method: str,
) -> bytes:
    """The call pickled for the child: ``(target, args, kwargs)``.

    Plain pickle when the child can find the function by reference and the
    arguments pickle; otherwise cloudpickle, which ships lambdas, closures and
    local classes by value.

    Raises:
        TypeError: Something cannot be pickled even by value; the message names
            it and says why.
    """
    target, problem = _target_of(function)
    call = (target, args, kwargs)
    if problem is None:
        try:
            return pickle.dumps(call, protocol=_PROTOCOL)
        except Exception:
            pass  # an argument defined in a function, say: by value below
    try:
        cloudpickle = _cloudpickle()
    except ImportError as exc:
        why = problem or "an argument cannot be pickled by reference"
        raise TypeError(
            f"{name} cannot run in a child process started by {method!r}: {why}, and "
            "cloudpickle, which would send it by value, cannot be imported "
            f"({exc}). Install cloudpickle, or pass start_method='fork'"
        ) from exc
    try:
        return cloudpickle.dumps(call, protocol=_PROTOCOL)  # type: ignore[no-any-return]
    except Exception as exc:
        raise _unpicklable(function, *call, name=name, dumps=cloudpickle.dumps, error=exc) from exc


def _target_of(function: Callable[..., Any]) -> tuple[Target, str | None]:
    """How the child will find ``function``, and why not by reference (None if it can)."""
    bound_to: Any = None
    func: Any = function
    if isinstance(function, types.MethodType):
        bound_to, func = function.__self__, function.__func__
    if type(func) is not types.FunctionType:
        return ("value", function), None  # builtins, partials, callable objects
    problem = _unreachable(func)
    if problem is not None:
        return ("value", function), problem
    code = func.__code__
    ref = ("ref", func.__module__, func.__qualname__, code.co_name, code.co_firstlineno)
    return (ref if bound_to is None else ("method", bound_to, ref)), None


def _unreachable(func: types.FunctionType) -> str | None:
    """Why a child process could not find ``func`` by its qualified name, or None."""
    module, qualname = func.__module__, func.__qualname__
    if "<lambda>" in qualname:
        return "it is a lambda"
    if "<locals>" in qualname:
        return "it is defined inside another function"
    if module == "__main__":
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if spec is None and getattr(main, "__file__", None) is None:
            return "it is defined in an interactive session, which a new process cannot import"
        if spec is not None and spec.name.rpartition(".")[2] == "__main__":
            return f"it is defined in {spec.name}, which a new process cannot import"
    if module not in sys.modules:
        return f"its module {module!r} is not imported"
    code = func.__code__
    try:
        found = _resolve(module, qualname, code.co_name, code.co_firstlineno)
    except Exception as exc:
        return f"{module}.{qualname} cannot be looked up ({type(exc).__name__}: {exc})"
    if found is not func:
        return f"{module}.{qualname} does not lead to it (was the name rebound?)"
    return None


def _resolve(module: str, qualname: str, co_name: str, firstlineno: int) -> Any:
    """Follow ``module.qualname``, then ``__wrapped__``/``__func__``, to the function
    whose code is ``co_name`` at ``firstlineno`` (the trampoline)."""
    obj: Any = sys.modules.get(module) or importlib.import_module(module)
    for part in qualname.split("."):
        if isinstance(obj, type):
            # Look in the class dict: getattr would bind, or run a descriptor.
            owner = next((k for k in obj.__mro__ if part in vars(k)), None)
            obj = vars(owner)[part] if owner is not None else getattr(obj, part)
        else:
            obj = getattr(obj, part)
    for _depth in range(100):
        # type(), not isinstance(): a wrapt proxy claims its wrapped function's class.
        if type(obj) is types.FunctionType:
            code = obj.__code__
            if code.co_name == co_name and code.co_firstlineno == firstlineno:
                return obj
        inner = getattr(obj, "__wrapped__", None)
        if inner is None:
            inner = getattr(obj, "__func__", None)
        if inner is None or inner is obj:
            break
        obj = inner
    raise LookupError(f"{module}.{qualname} leads to no function defined at line {firstlineno}")


def _unpicklable(
    function: Callable[..., Any],
    target: Target,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    name: str,
    dumps: Callable[[Any], bytes],
    error: Exception,
) -> TypeError:
    """A TypeError that names what cannot be pickled and why."""
    suspects: list[tuple[str, object]] = []
    if target[0] == "method":
        suspects.append((f"the object {name} is bound to", target[1]))
    elif target[0] == "value":
        suspects.extend(_captured(function, name))
        suspects.append((f"the function {name} itself", function))
    names = _parameter_names(function)
    for index, value in enumerate(args):
        which = f"`{names[index]}`" if index < len(names) else f"#{index + 1}"
        suspects.append((f"argument {which} of {name}", value))
    suspects.extend((f"argument `{key}` of {name}", value) for key, value in kwargs.items())
    for label, value in suspects:
        try:
            dumps(value)
        except Exception as exc:
            return TypeError(
                f"cannot send {label} to the child process: {_describe(value)} "
                f"cannot be pickled ({type(exc).__name__}: {exc}); pass something "
                "picklable, or create it inside the function"
            )
    return TypeError(
        f"cannot send the call {name} to the child process: {type(error).__name__}: {error}"
    )


def _captured(function: Callable[..., Any], name: str) -> list[tuple[str, object]]:
    """What a function sent by value takes along: its object, closure and globals."""
    func = getattr(function, "__func__", function)
    if type(func) is not types.FunctionType:
        return []
    found: list[tuple[str, object]] = []
    if isinstance(function, types.MethodType):
        found.append((f"the object {name} is bound to", function.__self__))
    for variable, cell in zip(func.__code__.co_freevars, func.__closure__ or ()):
        with contextlib.suppress(ValueError):  # an empty cell
            found.append((f"the variable `{variable}` that {name} closes over", cell.cell_contents))
    for variable in func.__code__.co_names:
        value = func.__globals__.get(variable, _MISSING)
        if value is not _MISSING and not isinstance(value, types.ModuleType):
            found.append((f"the global `{variable}` that {name} uses", value))
    return found


_MISSING = object()


def _parameter_names(function: Callable[..., Any]) -> list[str]:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters if p.kind in positional]


def _describe(value: object) -> str:
    kind = type(value)
    module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    return f"{module}{kind.__qualname__} {reprlib.repr(value)}"


# --- what travels: the reply -------------------------------------------------------


def unpack_reply(message: bytes, name: str) -> Any:
    """The result in the child's reply, or its exception raised again here."""
    try:
        reply = pickle.loads(message)
    except Exception as exc:
        raise TypeError(
            f"the result of {name} cannot be rebuilt in this process: {type(exc).__name__}: {exc}"
        ) from exc
    kind = reply[0]
    if kind == "ok":
        return reply[1]
    if kind == "unsendable":
        raise TypeError(f"{name} returned {reply[1]}, so it cannot be sent back from the child")
    if kind == "unusable":
        raise TypeError(
            f"{name} could not be set up in the child process: {reply[1]}"
        ) from _ChildTraceback(reply[2])
    _kind, data, type_name, text, tb_text, frames, chained, why = reply
    error: BaseException | None = None
    if data is not None:
        try:
            error = pickle.loads(data)
        except Exception as exc:
            why = f"it cannot be rebuilt in this process: {type(exc).__name__}: {exc}"
    cause: BaseException | None = None
    if not isinstance(error, BaseException):
        error = RuntimeError(
            f"{name} raised {type_name}: {text} (the exception itself could not be "
            f"sent back from the child process: {why})"
        )
        cause = _ChildTraceback(tb_text)
    elif chained:
        cause = _ChildTraceback(tb_text)  # the child's chain: only its text travels
    try:
        # The function's own frames follow ours, as if the call had been made here.
        raise error.with_traceback(rebuild(frames)) from cause
    finally:
        del error, cause


# --- the child's side ------------------------------------------------------------


def worker_main(
    conn: multiprocessing.connection.Connection,
    parent_death: bool,
    idle_timeout: float | None,
    on_exit: Callable[[], object],
) -> None:
    """A pooled child: run calls until the parent closes the socket or none comes in time.

    ``on_exit`` runs when the loop ends: the caller's shutdown, which stops the
    pools of the child's own nested calls.
    """
    _prepare_child(parent_death)
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    wait_ms = -1 if idle_timeout is None else math.ceil(idle_timeout * 1000)
    cache: dict[Target, Callable[..., Any]] = {}
    me = os.getpid()
    try:
        conn.send_bytes(READY)
        while True:
            if not poller.poll(wait_ms):
                conn.send_bytes(BYE)  # and never read again: a call sent now is retried
                break
            reply = _serve(conn.recv_bytes(), cache)
            if os.getpid() != me:
                os._exit(0)  # a copy made by os.fork() in the function: it must not answer
            conn.send_bytes(reply)
            reap_adopted()
    except (EOFError, OSError):
        pass  # the parent closed our socket, or has gone
    finally:
        on_exit()


def forked_main(
    conn: multiprocessing.connection.Connection, function: Any, args: Any, kwargs: Any
) -> None:
    """A fresh fork of the caller: make one call and send the reply."""
    _prepare_child(parent_death=True)
    me = os.getpid()
    reply = _call_and_pack(function, args, kwargs)
    if os.getpid() != me:
        os._exit(0)  # a copy made by os.fork() in the function: it must not answer
    with contextlib.suppress(OSError):  # the parent has gone
        conn.send_bytes(reply)


def _serve(job: bytes, cache: dict[Target, Callable[..., Any]]) -> bytes:
    try:
        target, args, kwargs = pickle.loads(job)
        function = _callable_of(target, cache)
    except BaseException as exc:
        detail = f"{type(exc).__name__}: {exc}"
        return pickle.dumps(("unusable", detail, _format(exc)), protocol=_PROTOCOL)
    return _call_and_pack(function, args, kwargs)


def _callable_of(target: Target, cache: dict[Target, Callable[..., Any]]) -> Callable[..., Any]:
    kind = target[0]
    if kind == "value":
        return target[1]  # type: ignore[no-any-return]
    ref = target[2] if kind == "method" else target
    function = cache.get(ref)
    if function is None:
        function = cache[ref] = _resolve(*ref[1:])
    if kind == "method":
        return types.MethodType(function, target[1])
    return function


def _call_and_pack(function: Callable[..., Any], args: Any, kwargs: Any) -> bytes:
    try:
        result = function(*args, **kwargs)
    except BaseException as exc:
        return _pack_exception(exc)
    finally:
        del args, kwargs
    try:
        return _dumps(("ok", result))
    except Exception as exc:
        what = f"{_describe(result)}, which cannot be pickled ({type(exc).__name__}: {exc})"
        return pickle.dumps(("unsendable", what), protocol=_PROTOCOL)


def _pack_exception(exc: BaseException) -> bytes:
    if isinstance(exc, _Interrupt) and not isinstance(exc, TimeoutExpired):
        # A deadline's interrupt escaped its scope here: it means nothing to the parent.
        exc = RuntimeError(f"an interrupt escaped its deadline in the child process: {exc}")
    kind = type(exc)
    type_name = f"{kind.__module__}.{kind.__qualname__}"
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    data: bytes | None
    why = ""
    try:
        data = _dumps(exc)
    except Exception as error:
        data, why = None, f"{type(error).__name__}: {error}"
    chained = exc.__cause__ is not None or (
        exc.__context__ is not None and not exc.__suppress_context__
    )
    frames = frames_of(exc, __file__)
    reply = ("raised", data, type_name, text, _format(exc), frames, chained, why)
    return pickle.dumps(reply, protocol=_PROTOCOL)


def _dumps(value: object) -> bytes:
    """``value`` pickled; by value with cloudpickle if plain pickle refuses it."""
    try:
        return pickle.dumps(value, protocol=_PROTOCOL)
    except Exception as error:
        try:
            cloudpickle = _cloudpickle()
        except ImportError:
            raise error from None
        return cloudpickle.dumps(value, protocol=_PROTOCOL)  # type: ignore[no-any-return]


def _cloudpickle() -> Any:
    """cloudpickle, imported only for what cannot travel by reference (import cost)."""
    import cloudpickle  # type: ignore[import-untyped]  # noqa: PLC0415

    return cloudpickle


def _format(exc: BaseException) -> str:
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # our own frame that made the call
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _prepare_child(parent_death: bool) -> None:
    """Make a new child a tree we can stop, deaf to the parent's signal handlers."""
    parent = os.getppid()
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # a group of its own: Ctrl-C at the terminal goes to the parent
    _prctl(parent_death)
    detach_forkserver()
    _reset_signals()
    if parent_death and os.getppid() != parent:
        os._exit(1)  # the parent died before the parent-death signal was armed


def _prctl(parent_death: bool) -> None:
    """Linux: die with the parent (if asked), and adopt the orphans of our descendants."""
    if not sys.platform.startswith("linux"):
        return
    # The child's only use of ctypes, on Linux: two prctl() calls.
    import ctypes  # noqa: PLC0415

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if parent_death:
            libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)
        # An orphan (a daemon's double fork, `setsid cmd &` from a shell that exits)
        # comes to us instead of init, so it stays in the tree that is killed.
        libc.prctl(_PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), 0, 0, 0)
    except (OSError, AttributeError):
        pass


_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36


def detach_forkserver(*, forget_server: bool = False) -> None:
    """Let go of the forkserver's "alive" pipe (and with ``forget_server``, of the server).

    Every forkserver child holds that pipe, so the server (our parent, whose
    death kills us) would otherwise outlive the caller while we run.
    """
    server = getattr(sys.modules.get("multiprocessing.forkserver"), "_forkserver", None)
    if server is None:
        return
    if forget_server:
        server._forkserver_pid = server._forkserver_address = None
        server._lock = threading.Lock()
    elif getattr(server, "_forkserver_pid", 0) is not None:
        return  # not a forkserver child: the server is ours
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        server._forkserver_alive_fd = None
        with contextlib.suppress(OSError):
            os.close(fd)


def _reset_signals() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    keep = getattr(_delivery, "_on_wakeup_signal", None)
    for number in signal.valid_signals():
        try:
            handler = signal.getsignal(number)
            if callable(handler) and handler is not keep:
                signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            continue
    signal.signal(signal.SIGINT, _ignore_signal)
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)


def _ignore_signal(signum: int, frame: types.FrameType | None) -> None:
    """SIGINT in a child: ignored (a Python handler, so that exec resets it)."""
