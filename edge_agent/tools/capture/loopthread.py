"""An asyncio event loop in a thread of its own, for callers that block.

The recording proxy and the replay servers are asyncio code. The command line runs them
with ``asyncio.run``; tests and other threaded callers (the agent's pollers are threads)
start them here and keep their own thread free to poll them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
START_TIMEOUT_S = 10.0


async def close_server(server: asyncio.Server | None,
                       connections: set[asyncio.Task[None]]) -> None:
    """Stop listening, then end the open connections: their tasks are cancelled and
    awaited, so each runs its own cleanup (the proxy records a close event) before the
    server is closed. For the recording proxy and the TCP replay server."""
    if server is not None:
        server.close()
    for task in list(connections):
        task.cancel()
    await asyncio.gather(*connections, return_exceptions=True)
    if server is not None:
        await server.wait_closed()


class LoopThread:
    """A daemon thread running one event loop until ``stop``."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=name)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = START_TIMEOUT_S) -> T:
        """Run ``coroutine`` in the loop and wait for its result (or its exception)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def call(self, function: Any, *args: Any) -> None:
        """Schedule a plain function in the loop's thread."""
        self.loop.call_soon_threadsafe(function, *args)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=START_TIMEOUT_S)
        if not self._thread.is_alive():
            self.loop.close()


class Startable(Protocol):
    async def start(self) -> Any: ...

    async def close(self) -> None: ...


S = TypeVar("S", bound=Startable)


class InBackground(Generic[S]):
    """A server (``start``/``close`` coroutines) running in a ``LoopThread`` of its own."""

    def __init__(self, server: S, name: str) -> None:
        self.server = server
        self._thread = LoopThread(name)
        try:
            self._thread.run(server.start())
        except BaseException:
            self._thread.stop()
            raise

    def stop(self) -> None:
        try:
            self._thread.run(self.server.close())
        finally:
            self._thread.stop()

    def __enter__(self) -> InBackground[S]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
