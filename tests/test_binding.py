"""The binding matrix: @timeout on every kind of callable, against the undecorated original.

As wrapt's own tests do: for each way a function can be defined (plain, instance
method, classmethod and staticmethod with the decorator outside and inside,
``async def`` of each) and each way it can be reached (through an instance,
through the class, through a subclass), the decorated callable must look and
behave like the original reached the same way: name, qualified name, docstring,
module, signature, result (with the right ``self``/``cls``), exceptions. A body
that never returns raises TimeoutExpired named after the function.

The decorated classes are built by applying ``timeout(...)`` to the very objects
``Original`` holds, which is what the ``@`` syntax does, so that ``__wrapped__``
and ``__qualname__`` can be compared with the originals by identity.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from helpers import assert_takes_about

from watchdog_timeout import SecondsOrFunction, TimeoutExpired, timeout

LIMIT = 0.05
ISOLATIONS = ("thread", "inline")

#: The outcomes every original can be asked for, by its ``action`` keyword.
RETURN, RAISE, SPIN = "return", "raise", "spin"


class Boom(Exception):
    """The function's own exception."""


def _outcome(first: object, x: int, y: int, action: str) -> tuple[object, int, int]:
    if action == RAISE:
        raise Boom(x, y)
    while action == SPIN:  # busy pure-Python work that never returns
        pass
    return (first, x, y)


async def _async_outcome(first: object, x: int, y: int, action: str) -> tuple[object, int, int]:
    if action == RAISE:
        raise Boom(x, y)
    while action == SPIN:  # busy on the event loop; a loop that never yields cannot be cancelled
        await asyncio.sleep(0)
    return (first, x, y)


# --- the originals --------------------------------------------------------------


def function(x: int, /, y: int = 2, *, action: str = RETURN) -> tuple[object, int, int]:
    """A plain function."""
    return _outcome(None, x, y, action)


async def async_function(x: int, /, y: int = 2, *, action: str = RETURN) -> tuple[object, int, int]:
    """A plain coroutine function."""
    return await _async_outcome(None, x, y, action)


class Original:
    """The undecorated methods of every kind."""

    def method(self, x: int, /, y: int = 2, *, action: str = RETURN) -> tuple[object, int, int]:
        """An instance method."""
        return _outcome(self, x, y, action)

    @classmethod
    def class_method(
        cls, x: int, /, y: int = 2, *, action: str = RETURN
    ) -> tuple[object, int, int]:
        """A classmethod."""
        return _outcome(cls, x, y, action)

    @staticmethod
    def static_method(x: int, /, y: int = 2, *, action: str = RETURN) -> tuple[object, int, int]:
        """A staticmethod."""
        return _outcome(None, x, y, action)

    async def async_method(
        self, x: int, /, y: int = 2, *, action: str = RETURN
    ) -> tuple[object, int, int]:
        """An async instance method."""
        return await _async_outcome(self, x, y, action)

    @classmethod
    async def async_class_method(
        cls, x: int, /, y: int = 2, *, action: str = RETURN
    ) -> tuple[object, int, int]:
        """An async classmethod."""
        return await _async_outcome(cls, x, y, action)

    @staticmethod
    async def async_static_method(
        x: int, /, y: int = 2, *, action: str = RETURN
    ) -> tuple[object, int, int]:
        """An async staticmethod."""
        return await _async_outcome(None, x, y, action)


ORIGINAL_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "function": function,
    "async_function": async_function,
}


# --- the decorated versions -----------------------------------------------------


@dataclass(frozen=True)
class Decorated:
    """Everything decorated with one ``timeout(...)``; ``sub`` subclasses ``cls``."""

    functions: dict[str, Any]
    cls: type[Any]
    sub: type[Any]


def decorate_all(seconds: SecondsOrFunction, isolation: Any) -> Decorated:
    """Apply ``timeout(seconds, isolation=...)`` to every original, as ``@`` would."""
    limit = timeout(seconds, isolation=isolation)
    raw = vars(Original)

    class Class:
        # "outside": @timeout above @classmethod/@staticmethod; "inside": below it.
        method = limit(raw["method"])
        class_method_outside = limit(raw["class_method"])
        class_method_inside = classmethod(limit(raw["class_method"].__func__))
        static_method_outside = limit(raw["static_method"])
        static_method_inside = staticmethod(limit(raw["static_method"].__func__))
        async_method = limit(raw["async_method"])
        async_class_method_outside = limit(raw["async_class_method"])
        async_class_method_inside = classmethod(limit(raw["async_class_method"].__func__))
        async_static_method_outside = limit(raw["async_static_method"])
        async_static_method_inside = staticmethod(limit(raw["async_static_method"].__func__))

    class Sub(Class):
        pass

    functions = {name: limit(original) for name, original in ORIGINAL_FUNCTIONS.items()}
    return Decorated(functions, Class, Sub)


DECORATED = {isolation: decorate_all(LIMIT, isolation) for isolation in ISOLATIONS}


# --- the matrix -----------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """One binding, resolved: the decorated and the original callable reached the same way."""

    decorated: Callable[..., Any]
    original: Callable[..., Any]
    #: Positional arguments before ``x``: the instance, for a method called on the class.
    prefix: tuple[object, ...]
    #: What the body receives as ``self``/``cls`` (None for functions and staticmethods).
    first: object
    #: The object the decorator was applied to, and what it returned.
    raw_original: object
    raw_decorated: Any


@dataclass(frozen=True)
class Binding:
    """How a function is defined (``name``, ``wrapping``) and reached (``via``, ``subclass``)."""

    name: str
    wrapping: str = ""  # "outside" or "inside" for classmethods and staticmethods
    via: str = "instance"  # "instance" or "class"
    subclass: bool = False

    @property
    def id(self) -> str:
        parts = [self.name, self.wrapping]
        if self.name not in ORIGINAL_FUNCTIONS:
            owner = "subclass" if self.subclass else "class"
            parts.append(f"via-{owner}" if self.via == "class" else f"via-{owner}-instance")
        return "-".join(part for part in parts if part)

    @property
    def is_async(self) -> bool:
        return self.name.startswith("async_")

    def resolve(self, decorated: Decorated) -> Resolved:
        if self.name in ORIGINAL_FUNCTIONS:
            original = ORIGINAL_FUNCTIONS[self.name]
            wrapper = decorated.functions[self.name]
            return Resolved(wrapper, original, (), None, original, wrapper)
        owner = decorated.sub if self.subclass else decorated.cls
        attribute = f"{self.name}_{self.wrapping}" if self.wrapping else self.name
        descriptor = vars(Original)[self.name]
        raw_original, raw_decorated = descriptor, vars(decorated.cls)[attribute]
        if self.wrapping == "inside":  # the decorator saw the plain function
            raw_original, raw_decorated = raw_original.__func__, raw_decorated.__func__
        instance = owner()
        target = instance if self.via == "instance" else None
        reached = getattr(owner if target is None else target, attribute)
        bound = descriptor.__get__(target, owner)  # as the same attribute lookup binds it
        prefix: tuple[object, ...] = ()
        if isinstance(descriptor, classmethod):
            first: object = owner
        elif isinstance(descriptor, staticmethod):
            first = None
        else:
            first = instance
            if target is None:
                prefix = (instance,)
        return Resolved(reached, bound, prefix, first, raw_original, raw_decorated)


def _both_ways(name: str, *, subclass: bool = False) -> list[Binding]:
    return [Binding(name, via=via, subclass=subclass) for via in ("instance", "class")]


def _wrapped_both_ways(name: str, *, subclass: bool = False) -> list[Binding]:
    return [
        Binding(name, wrapping, via, subclass)
        for wrapping in ("outside", "inside")
        for via in ("instance", "class")
    ]


BINDINGS = [
    Binding("function"),
    *_both_ways("method"),
    *_wrapped_both_ways("class_method"),
    *_wrapped_both_ways("static_method"),
    *_both_ways("method", subclass=True),
    Binding("class_method", "outside", "class", subclass=True),
    Binding("class_method", "inside", "class", subclass=True),
    Binding("async_function"),
    *_both_ways("async_method"),
    *_wrapped_both_ways("async_class_method"),
    *_wrapped_both_ways("async_static_method"),
    Binding("async_method", subclass=True),
    Binding("async_class_method", "outside", "class", subclass=True),
    Binding("async_class_method", "inside", "class", subclass=True),
]

each_binding = pytest.mark.parametrize("binding", BINDINGS, ids=[b.id for b in BINDINGS])
each_isolation = pytest.mark.parametrize("isolation", ISOLATIONS)


def call(binding: Binding, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function``; run the coroutine to its end on a new event loop if async."""
    if binding.is_async:
        return asyncio.run(function(*args, **kwargs))
    return function(*args, **kwargs)


# --- the checks -----------------------------------------------------------------


@each_isolation
@each_binding
def test_binding_keeps_metadata(binding: Binding, isolation: str) -> None:
    resolved = binding.resolve(DECORATED[isolation])
    decorated, original = resolved.decorated, resolved.original
    assert decorated.__name__ == original.__name__
    assert decorated.__qualname__ == original.__qualname__
    assert decorated.__doc__ == original.__doc__
    assert decorated.__module__ == original.__module__
    assert inspect.signature(decorated) == inspect.signature(original)


@each_isolation
@each_binding
def test_binding_wraps_the_original(binding: Binding, isolation: str) -> None:
    resolved = binding.resolve(DECORATED[isolation])
    assert resolved.raw_decorated.__wrapped__ is resolved.raw_original


@each_isolation
@each_binding
def test_binding_returns_result(binding: Binding, isolation: str) -> None:
    resolved = binding.resolve(DECORATED[isolation])
    expected = call(binding, resolved.original, *resolved.prefix, 1, y=5)
    result = call(binding, resolved.decorated, *resolved.prefix, 1, y=5)
    assert result == expected
    assert result[0] is resolved.first
    assert call(binding, resolved.decorated, *resolved.prefix, 7) == (resolved.first, 7, 2)


@each_isolation
@each_binding
def test_binding_passes_exception_through(binding: Binding, isolation: str) -> None:
    resolved = binding.resolve(DECORATED[isolation])
    with pytest.raises(Boom) as from_original:
        call(binding, resolved.original, *resolved.prefix, 1, action=RAISE)
    with pytest.raises(Boom) as from_decorated:
        call(binding, resolved.decorated, *resolved.prefix, 1, action=RAISE)
    assert type(from_decorated.value) is type(from_original.value)
    assert from_decorated.value.args == from_original.value.args == (1, 2)


@each_isolation
@each_binding
def test_binding_times_out_busy_body(binding: Binding, isolation: str) -> None:
    resolved = binding.resolve(DECORATED[isolation])
    with assert_takes_about(LIMIT), pytest.raises(TimeoutExpired) as caught:
        call(binding, resolved.decorated, *resolved.prefix, 1, action=SPIN)
    assert caught.value.name == resolved.original.__qualname__
    assert caught.value.seconds == LIMIT
    assert caught.value.stopped


@each_isolation
@each_binding
def test_binding_computed_limit_gets_the_functions_arguments(
    binding: Binding, isolation: str
) -> None:
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def seconds(*args: Any, **kwargs: Any) -> float:
        seen.append((args, kwargs))
        return 5.0

    resolved = binding.resolve(decorate_all(seconds, isolation))
    call(binding, resolved.decorated, *resolved.prefix, 1, y=5)
    # Exactly what the function itself receives: self or cls first, for methods.
    received = (1,) if resolved.first is None else (resolved.first, 1)
    assert seen == [(received, {"y": 5})]


@each_isolation
@each_binding
def test_binding_iscoroutinefunction_matches(binding: Binding, isolation: str) -> None:
    resolved = binding.resolve(DECORATED[isolation])
    assert inspect.iscoroutinefunction(resolved.decorated) is binding.is_async
    assert inspect.iscoroutinefunction(resolved.original) is binding.is_async


# --- what cannot be decorated ---------------------------------------------------


def _generator(*args: object) -> Iterator[int]:
    yield 1


async def _async_generator(*args: object) -> AsyncIterator[int]:
    yield 1


@pytest.mark.parametrize("isolation", [*ISOLATIONS, "process"])
@pytest.mark.parametrize(
    "target",
    [
        _generator,
        _async_generator,
        classmethod(_generator),
        staticmethod(_generator),
        classmethod(_async_generator),
        staticmethod(_async_generator),
    ],
    ids=[
        "generator",
        "async-generator",
        "classmethod-generator",
        "staticmethod-generator",
        "classmethod-async-generator",
        "staticmethod-async-generator",
    ],
)
def test_timeout_rejects_generator_functions(target: Any, isolation: Any) -> None:
    decorator = timeout(LIMIT, isolation=isolation)
    with pytest.raises(TypeError, match=r"with deadline\(") as caught:
        decorator(target)
    assert "generator" in str(caught.value)


@pytest.mark.parametrize("target", [42, "fetch", None, classmethod(42)])  # type: ignore[arg-type]
def test_timeout_rejects_non_callable(target: object) -> None:
    with pytest.raises(TypeError, match="decorates functions"):
        timeout(LIMIT)(target)  # type: ignore[arg-type]
