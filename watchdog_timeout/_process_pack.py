"""What travels to the child: the call, by reference where it can, else by value.

Design notes
------------
A child started by ``spawn`` or ``forkserver`` shares nothing with the caller:
the function and its arguments cross a socket as a pickle, and the child must
find the very function the caller meant.

Things that don't work:

- Pickling a decorated module-level function: the name refers to the wrapper,
  and pickle refuses the original ("not the same object as module.f").
- Plain pickle for lambdas, closures and local classes: it pickles functions and
  classes by name, and these have none a new process could follow.
- cloudpickle for everything: it is slower than plain pickle, and importing it
  costs every program that only ever sends module-level functions.

Solution:

- A function that can be found by name travels as ``(module, qualname,
  co_name, co_firstlineno)``: the child follows the qualified name and then
  ``__wrapped__``/``__func__`` until it reaches the function whose code starts
  there (pebble's trampoline, without registering anything).
- What cannot be found that way (lambdas, closures, methods of local classes,
  an interactive ``__main__``) travels by value with cloudpickle, the serializer
  of loky, joblib, dask and ray, and so do arguments, results and exceptions
  that plain pickle refuses (instances of local classes). cloudpickle is
  imported only then.
- What the child then cannot find by name (a function defined under the main
  module's ``if __name__ == "__main__":``, which the child's import skips) is
  reported back before it runs, and sent again by value, from then on.
- A decorator's proxy (a wrapt ``FunctionWrapper``) that a closure refers to
  pickles as neither a function nor an object: it travels by the name it is
  found by, so the child calls the decorated function too.
- The call is pickled in the caller, before any child is used; what cannot be
  pickled even by value is named: an argument, the object a method is bound to,
  or a variable a closure takes along.
"""

from __future__ import annotations

import contextlib
import dis
import importlib
import inspect
import io
import pickle
import reprlib
import sys
import types
from typing import Any, Callable

__all__ = (
    "PROTOCOL",
    "Target",
    "describe",
    "dumps",
    "find",
    "pack_call",
    "resolve",
    "track_local_classes",
)

PROTOCOL = pickle.HIGHEST_PROTOCOL

#: What the child is told to call: ("ref", module, qualname, co_name, firstlineno),
#: ("method", bound_to, ref) or ("value", callable).
Target = tuple[Any, ...]


def pack_call(
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str,
    method: str,
    *,
    by_value: bool = False,
) -> bytes:
    """The call pickled for the child: ``(target, args, kwargs)``.

    Plain pickle when the child can find the function by reference and the
    arguments pickle; otherwise cloudpickle, which ships lambdas, closures and
    local classes by value. With ``by_value`` (a child could not find something
    by name), cloudpickle from now on for this function.

    Raises:
        TypeError: Something cannot be pickled even by value; the message names
            it and says why.
    """
    target, problem = _target_of(function)
    if problem is None and target[0] != "value":
        ref = target[2] if target[0] == "method" else target
        if by_value:
            _not_found.add(ref)
        if ref in _not_found:
            target, problem = ("value", function), "a child process could not find it by name"
    call = (target, args, kwargs)
    if problem is None:
        try:
            return pickle.dumps(call, protocol=PROTOCOL)
        except Exception:
            pass  # an argument defined in a function, say: by value below
    try:
        by_value_dumps = _by_value_dumps()
    except ImportError as exc:
        why = problem or "an argument cannot be pickled by reference"
        raise TypeError(
            f"{name} cannot run in a child process started by {method!r}: {why}, and "
            "cloudpickle, which would send it by value, cannot be imported "
            f"({exc}). Install cloudpickle, or pass start_method='fork'"
        ) from exc
    try:
        return by_value_dumps(call)
    except Exception as exc:
        raise _unpicklable(function, *call, name=name, dumps=by_value_dumps, error=exc) from exc


#: References a child could not follow (a function defined under the main
#: module's ``if __name__ == "__main__":``, say): sent by value instead.
_not_found: set[Target] = set()


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
        found = resolve(module, qualname, code.co_name, code.co_firstlineno)
    except Exception as exc:
        return f"{module}.{qualname} cannot be looked up ({type(exc).__name__}: {exc})"
    if found is not func:
        return f"{module}.{qualname} does not lead to it (was the name rebound?)"
    return None


def resolve(module: str, qualname: str, co_name: str, firstlineno: int) -> Any:
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
                f"cannot send {label} to the child process: {describe(value)} "
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
    loaded = {i.argval for i in dis.get_instructions(func) if i.opname == "LOAD_GLOBAL"}
    for variable in sorted(loaded):
        value = func.__globals__.get(variable, _MISSING)
        if value is not _MISSING and not isinstance(value, types.ModuleType):
            found.append((f"the global `{variable}` that {name} uses", value))
    return found


_MISSING = object()


def track_local_classes(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Before a fork: let the local classes of a call come back as themselves.

    A forked child sends a class defined in a function (an exception class, the
    class of an argument) by value, and cloudpickle matches it to the caller's
    class only if this process pickled that class before (its class tracker):
    pickle them once here. Classes the function uses and those of its arguments.
    """
    values = [value for _label, value in _captured(function, "")]
    values.extend(type(value) for value in (*args, *kwargs.values()))
    if isinstance(function, types.MethodType):
        values.append(type(function.__self__))
    classes = {v for v in values if isinstance(v, type) and "<locals>" in v.__qualname__}
    if not classes:
        return
    with contextlib.suppress(Exception):
        by_value_dumps = _by_value_dumps()
        for cls in classes:
            with contextlib.suppress(Exception):
                by_value_dumps(cls)


def _parameter_names(function: Callable[..., Any]) -> list[str]:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters if p.kind in positional]


def describe(value: object) -> str:
    """``module.Type <short repr>``, for messages."""
    kind = type(value)
    module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    return f"{module}{kind.__qualname__} {reprlib.repr(value)}"


def dumps(value: object) -> bytes:
    """``value`` pickled; by value with cloudpickle if plain pickle refuses it."""
    try:
        return pickle.dumps(value, protocol=PROTOCOL)
    except Exception as error:
        try:
            by_value_dumps = _by_value_dumps()
        except ImportError:
            raise error from None
        return by_value_dumps(value)


_by_value: Callable[[object], bytes] | None = None


def _by_value_dumps() -> Callable[[object], bytes]:
    """cloudpickle's dumps, imported on first use (import cost), knowing decorated names."""
    global _by_value
    if _by_value is not None:
        return _by_value
    import cloudpickle  # type: ignore[import-untyped]  # noqa: PLC0415

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        def reducer_override(self, obj: Any) -> Any:
            # A decorator's proxy (a wrapt FunctionWrapper) claims to be a function
            # but pickles as neither: send the name it is found by.
            if type(obj) is not types.FunctionType and isinstance(obj, types.FunctionType):
                module, qualname = str(getattr(obj, "__module__", "")), obj.__qualname__
                with contextlib.suppress(Exception):
                    if find(module, qualname) is obj:
                        return (find, (module, qualname))
            return super().reducer_override(obj)

    def by_value(value: object) -> bytes:
        buffer = io.BytesIO()
        Pickler(buffer, protocol=PROTOCOL).dump(value)
        return buffer.getvalue()

    _by_value = by_value
    return by_value


def find(module: str, qualname: str) -> Any:
    """``module.qualname``, imported if need be: how a name sent by reference is found."""
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj
