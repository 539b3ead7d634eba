"""A Modbus TCP recording proxy: a master connects to it, it forwards to the real device
and records both directions into a capture file.

Bytes are forwarded unchanged and at once, before they are parsed: the proxy must not be
why a device or a master misbehaves, and a frame the recorder finds malformed still
reaches the other side exactly as it was sent. Each master connection gets its own device
connection (so a device that takes one client at a time behaves as without the proxy),
its own ``conn`` number and ``open``/``close`` events in the capture.

Frames are recorded as each ``recv`` completes them; every record is flushed at once, so
a proxy killed in the field leaves a capture that is whole up to its last frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from datetime import UTC, datetime

from edge_agent.tools.capture.exchanges import Exchanges
from edge_agent.tools.capture.files import CaptureWriter
from edge_agent.tools.capture.format import Event, Record
from edge_agent.tools.capture.loopthread import close_server
from edge_agent.tools.capture.mbap_stream import MbapSplitter, RawFrame

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 5.0
READ_SIZE = 65536


class RecordingProxy:
    """Serves one listening socket; every connection is forwarded to ``target``."""

    def __init__(self, target: tuple[str, int], writer: CaptureWriter, link: str, *,
                 first_xid: int = 1, first_conn: int = 1) -> None:
        """``first_xid``/``first_conn``: above the numbers of a capture being continued
        (``--append``), so answers keep pairing with their own requests."""
        self._target = target
        self._writer = writer
        self._link = link
        self._exchanges = Exchanges({link: "modbus-tcp"}, first_xid)
        self._conn_numbers = itertools.count(first_conn)
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        # Record times count from the header's start, also when appending to a capture.
        started_ago_s = (datetime.now(UTC) - writer.header.started).total_seconds()
        self._base = started_ago_s - time.monotonic()
        self.frames_recorded = 0
        self.failure: OSError | None = None  # the capture could not be written

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: a free port); returns the bound port."""
        self._server = await asyncio.start_server(self._session, host, port)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and end the open sessions (their close events are recorded)."""
        await close_server(self._server, self._sessions)

    def _now(self) -> float:
        return round(max(0.0, time.monotonic() + self._base), 6)

    async def _session(self, master_in: asyncio.StreamReader,
                       master_out: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        conn = next(self._conn_numbers)
        peer = _peer(master_out)
        try:
            # A task cancelled by close() must end normally: asyncio's stream callback
            # reports a cancelled connection handler as an unhandled exception.
            with contextlib.suppress(asyncio.CancelledError):
                await self._forward(conn, peer, master_in, master_out)
        finally:
            self._sessions.discard(task)
            master_out.close()

    async def _forward(self, conn: int, peer: str, master_in: asyncio.StreamReader,
                       master_out: asyncio.StreamWriter) -> None:
        self._record([Event(self._now(), "open", self._link, conn, peer)])
        try:
            device_in, device_out = await asyncio.wait_for(
                asyncio.open_connection(*self._target), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as err:
            log.error("cannot connect to the device at %s:%d: %s", *self._target, err)
            self._record([Event(self._now(), "close", self._link, conn,
                                note=f"the device did not accept a connection ({err})")])
            return
        except asyncio.CancelledError:  # the proxy closed while the device was connecting
            self._record([Event(self._now(), "close", self._link, conn,
                                note="closed by the proxy while connecting to the device")])
            raise
        splitters = {"tx": MbapSplitter(), "rx": MbapSplitter()}
        pumps = {asyncio.create_task(self._pump(master_in, device_out, "tx", conn,
                                                splitters["tx"])): "master",
                 asyncio.create_task(self._pump(device_in, master_out, "rx", conn,
                                                splitters["rx"])): "device"}
        how = "closed by the proxy"
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            how = f"closed by the {pumps[done.pop()]}"
        finally:
            for pump in pumps:
                pump.cancel()
            device_out.close()
            self._end(conn, splitters, how)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    direction: str, conn: int, splitter: MbapSplitter) -> None:
        """Forward one direction until its end of file, recording what it carries."""
        with contextlib.suppress(ConnectionError):
            while data := await source.read(READ_SIZE):
                sink.write(data)
                self._frames(splitter.feed(data, self._now()), direction, conn)
                await sink.drain()

    def _end(self, conn: int, splitters: dict[str, MbapSplitter], how: str) -> None:
        for direction, splitter in splitters.items():
            self._frames(splitter.interrupt(self._now(), how), direction, conn)
        self._exchanges.close(self._link, conn)
        self._record([Event(self._now(), "close", self._link, conn, note=how)])

    def _frames(self, frames: list[RawFrame], direction: str, conn: int) -> None:
        self._record([self._exchanges.frame(frame.t, direction, self._link, conn, frame.data,
                                            frame.problem) for frame in frames])
        self.frames_recorded += len(frames)

    def _record(self, records: list[Record]) -> None:
        if self.failure is not None:
            return
        try:
            self._writer.write(records)
        except OSError as err:  # disk full, card pulled: say so once, keep forwarding
            self.failure = err
            log.error("cannot write the capture any more (%s); still forwarding, no longer "
                      "recording", err)


def _peer(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)
