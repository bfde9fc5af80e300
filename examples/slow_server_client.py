"""Put a hard limit on a blocking call into a third-party-style client.

The script starts a deliberately slow TCP server on 127.0.0.1 (it accepts, then
answers only after 10 seconds), and a small client library whose ``fetch`` has
no timeout of its own. ``@timeout`` answers the caller on time anyway:

- with a native timeout taken from ``remaining()`` (less a margin, so that the
  socket's own timeout fires first and the client closes its socket itself),
  the call ends just before the limit (the best case: nothing is left running);
- without one, the worker thread is blocked in ``recv`` (C code): the caller gets
  ``TimeoutExpired(stopped=False)`` after ``seconds + grace``, and the worker is
  abandoned until the call returns;
- with ``on_expire`` closing the socket, the blocked call fails at once and the
  worker stops cleanly.

Run: python examples/slow_server_client.py
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time

from watchdog_timeout import TimeoutExpired, abandoned_workers, deadline, remaining, timeout


class SlowHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(100)
        time.sleep(10)  # the slow part
        self.request.sendall(b"finally\n")


class SlowServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def fetch(address: tuple[str, int], *, native_timeout: float | None = None) -> bytes:
    """A client call with no timeout of its own (unless given one)."""
    with socket.create_connection(address) as connection:
        connection.settimeout(native_timeout)
        connection.sendall(b"GET\n")
        return connection.recv(100)


@timeout(0.5)
def fetch_with_native_timeout(address: tuple[str, int]) -> bytes:
    # Without the margin the interrupt races the socket's timeout, and can land in
    # the client's clean-up (socket.close) and leave the socket open.
    return fetch(address, native_timeout=max(remaining() - 0.2, 0.01))


@timeout(0.5, grace=0.2)
def fetch_blocking(address: tuple[str, int]) -> bytes:
    return fetch(address)


@timeout(0.5)
def fetch_closing_on_expiry(address: tuple[str, int]) -> bytes:
    with (
        socket.create_connection(address) as connection,
        deadline(0.4, on_expire=lambda: connection.shutdown(socket.SHUT_RDWR)),
    ):
        connection.sendall(b"GET\n")
        data = connection.recv(100)
        if not data:
            raise ConnectionError("closed by on_expire")
        return data


def attempt(function: object, address: tuple[str, int]) -> None:
    start = time.monotonic()
    try:
        function(address)  # type: ignore[operator]
    except TimeoutExpired as error:
        print(f"  {error}  [{time.monotonic() - start:.2f} s, stopped={error.stopped}]")
    except OSError as error:  # the native timeout fired first
        print(f"  {type(error).__name__}: {error}  [{time.monotonic() - start:.2f} s]")


def main() -> None:
    with SlowServer(("127.0.0.1", 0), SlowHandler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        address = server.server_address[:2]
        print("native timeout from remaining():")
        attempt(fetch_with_native_timeout, address)
        print("blocked in recv, no native timeout:")
        attempt(fetch_blocking, address)
        print(f"  abandoned worker threads still running: {len(abandoned_workers())}")
        print("on_expire closes the socket:")
        attempt(fetch_closing_on_expiry, address)
        server.shutdown()


if __name__ == "__main__":
    main()
