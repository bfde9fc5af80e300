"""Static checks of the public types, for ``mypy --strict`` only; pytest does not collect this.

Each ``assert_type`` states what the decorated callable looks like to a type
checker; each ``# type: ignore[code]`` marks a call that must be rejected:
``warn_unused_ignores`` (on under ``strict``) fails if mypy stops reporting it.
The module is never imported: the bodies below are never run.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from typing_extensions import assert_type

from watchdog_timeout import Deadline, TimeoutExpired, deadline, remaining, timeout

# --- a plain function keeps its parameters and return type ----------------------


@timeout(1.5)
def fetch(url: str, /, retries: int = 3, *parts: str, verify: bool, **headers: str) -> bytes:
    return b""


assert_type(fetch("https://example.org", 2, "a", "b", verify=True, accept="*/*"), bytes)
assert_type(fetch("https://example.org", verify=False), bytes)

fetch(b"https://example.org", verify=True)  # type: ignore[arg-type]
fetch("https://example.org", "3", verify=True)  # type: ignore[arg-type]
fetch("https://example.org", 3, 4, verify=True)  # type: ignore[arg-type]
fetch("https://example.org", verify=True, accept=1)  # type: ignore[arg-type]
fetch("https://example.org")  # type: ignore[call-arg]
fetch(verify=True)  # type: ignore[call-arg]
fetch(url="https://example.org", verify=True)  # type: ignore[call-arg]
# **headers: str
fetch("https://example.org", verify=True, retry=3)  # type: ignore[arg-type]


@timeout(None, isolation="inline", grace=0.1, label="job")
def job(count: int, *, name: str = "") -> list[str]:
    return [name] * count


assert_type(job(2, name="x"), list[str])
job(2, nmae="x")  # type: ignore[call-arg]
job("2")  # type: ignore[arg-type]

# --- methods ---------------------------------------------------------------------


class Client:
    @timeout(2)
    def get(self, path: str, *, attempts: int = 1) -> dict[str, int]:
        return {}

    @timeout(2)
    @classmethod
    def create(cls, host: str) -> Client:
        return cls()

    @classmethod
    @timeout(2)
    def create_inside(cls, host: str) -> Client:
        return cls()

    @timeout(2)
    @staticmethod
    def parse(data: bytes) -> int:
        return 0

    @staticmethod
    @timeout(2)
    def parse_inside(data: bytes) -> int:
        return 0

    @timeout(2)
    async def aget(self, path: str) -> str:
        return path


client = Client()
assert_type(client.get("/", attempts=2), dict[str, int])
assert_type(Client.get(client, "/"), dict[str, int])
assert_type(Client.create("localhost"), Client)
assert_type(client.create("localhost"), Client)
assert_type(Client.create_inside("localhost"), Client)
assert_type(Client.parse(b""), int)
assert_type(client.parse(b""), int)
assert_type(Client.parse_inside(b""), int)

client.get(1)  # type: ignore[arg-type]
client.get()  # type: ignore[call-arg]
client.get("/", attempt=2)  # type: ignore[call-arg]
Client.create(8080)  # type: ignore[arg-type]
Client.create_inside()  # type: ignore[call-arg]
Client.parse("text")  # type: ignore[arg-type]
Client.parse_inside(b"", b"")  # type: ignore[call-arg]

# --- async functions: the call is a coroutine of the original result -------------


@timeout(0.5)
async def download(url: str, *, chunk: int = 1024) -> bytes:
    return b""


async def consume() -> None:
    result = await assert_type(download("u", chunk=1), Coroutine[Any, Any, bytes])
    assert_type(result, bytes)
    text = await assert_type(client.aget("/"), Coroutine[Any, Any, str])
    assert_type(text, str)
    await download(1)  # type: ignore[arg-type]
    await download("u", chunks=1)  # type: ignore[call-arg]


# --- computed limits --------------------------------------------------------------


@timeout(lambda x: 1.0)
def computed(x: int) -> str:
    return str(x)


@timeout(lambda url, retries=0: 1.0 + retries)
def computed_retries(url: str, retries: int = 0) -> bytes:
    return b""


assert_type(computed(1), str)
assert_type(computed_retries("u", 2), bytes)
computed("1")  # type: ignore[arg-type]
timeout(lambda x: "1.0")  # type: ignore[arg-type, return-value]
timeout("1.0")  # type: ignore[arg-type]
timeout(1, isolation="threads")  # type: ignore[arg-type]
timeout(1, grace="0.5")  # type: ignore[arg-type]
timeout(1, label=3)  # type: ignore[arg-type]
timeout(1, graze=0.5)  # type: ignore[call-arg]

# --- deadline() and remaining() ---------------------------------------------------

assert_type(deadline(1), Deadline)
assert_type(deadline(None, suppress=True, label="block"), Deadline)
with deadline(1) as scope:
    assert_type(scope, Deadline)
assert_type(scope.expired, bool)
assert_type(remaining(), float | None)
deadline("1")  # type: ignore[arg-type]
deadline(1, on_expire=3)  # type: ignore[arg-type]


def handle(error: TimeoutExpired) -> None:
    assert_type(error.name, str)
    assert_type(error.seconds, float | None)
    assert_type(error.stopped, bool)
