"""Serve a responder as a Modbus TCP device: asyncio sockets and our own MBAP framing.

Requests on one connection are answered one at a time in order, like a device's single
Modbus task; several connections may be open at once and share the responder (a strict
replay's order is the order requests arrive over all of them).
"""

from __future__ import annotations

import asyncio
import contextlib

from edge_agent.tools.capture.loopthread import close_server
from edge_agent.tools.capture.mbap_stream import MbapSplitter
from edge_agent.tools.replay.serve import Responder

READ_SIZE = 4096


class TcpReplayServer:
    """Listens on ``host:port`` (0: a free port, read ``port`` after ``start``)."""

    def __init__(self, responder: Responder, host: str = "127.0.0.1", port: int = 0) -> None:
        self._responder = responder
        self._host, self.port = host, port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> TcpReplayServer:
        self._server = await asyncio.start_server(self._serve, self._host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        await close_server(self._server, self._connections)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        splitter = MbapSplitter()
        try:
            # Cancelled by close(): end normally (asyncio's stream callback reports a
            # cancelled connection handler as an unhandled exception).
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await reader.read(READ_SIZE):
                    if not await self._answer(splitter, data, writer):
                        return
        finally:
            self._connections.discard(task)
            writer.close()

    async def _answer(self, splitter: MbapSplitter, data: bytes,
                      writer: asyncio.StreamWriter) -> bool:
        """Answer the frames ``data`` completes; False once the responder hangs up."""
        for frame in splitter.feed(data, 0.0):
            reply = self._responder.respond(frame.data, "modbus-tcp")
            if reply.data is not None:
                writer.write(reply.data)
                await writer.drain()
            if reply.hang_up:
                return False
        return True
