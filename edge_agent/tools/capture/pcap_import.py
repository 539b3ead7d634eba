"""Import Modbus/TCP traffic from a pcap or pcapng file (tcpdump, Wireshark) as a capture.

Each TCP connection to a Modbus port is put back together per direction (retransmissions
dropped, out-of-order segments reordered, holes reported as ``gap`` events), cut into
frames by the MBAP length (several frames in one segment, one frame over several), and
each answer is paired with its request by transaction id. Nothing is smoothed over:
exceptions, malformed frames, unanswered requests and answers without a request stay in
the capture as what they are, and a connection whose start was not captured is marked
"joined mid-stream".

Each Modbus server (address:port) becomes one link of the capture, each TCP connection
to it one ``conn``. Frames are stamped with the capture time of the segment that completed
them, in seconds from the first packet in the file. Inside, times are whole
microseconds (``TcpSegment.t_us``), so the seconds written are exact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.tools.capture.exchanges import Exchanges, tally
from edge_agent.tools.capture.format import Event, Frame, Header, LinkInfo, Record
from edge_agent.tools.capture.mbap_stream import MbapSplitter, RawFrame
from edge_agent.tools.capture.pcap_read import PcapSummary, TcpSegment, tcp_segments
from edge_agent.tools.capture.tcp_reassembly import Chunk, Gap, Reassembler

MODBUS_PORT = 502


@dataclass(frozen=True)
class Imported:
    """The capture made from a pcap file, and what the import met on the way."""

    header: Header
    records: tuple[Record, ...]
    pcap: PcapSummary
    retransmissions: int
    counts: Counter[str] = field(default_factory=Counter)


@dataclass
class _Direction:
    reassembler: Reassembler = field(default_factory=Reassembler)
    splitter: MbapSplitter = field(default_factory=MbapSplitter)


@dataclass
class _Connection:
    link: str
    conn: int
    peer: str
    tx: _Direction = field(default_factory=_Direction)
    rx: _Direction = field(default_factory=_Direction)
    closed: bool = False


def import_pcap(path: Path, ports: tuple[int, ...] = (MODBUS_PORT,)) -> Imported:
    """Read ``path`` and build a capture of its Modbus/TCP traffic on ``ports``.

    Raises ``PcapError`` for a file that is not a readable capture.
    """
    importer = _Importer(ports)
    summary = PcapSummary()
    for segment in tcp_segments(path, summary):
        importer.segment(segment)
    importer.finish()
    return importer.result(path, summary)


class _Importer:
    def __init__(self, ports: tuple[int, ...]) -> None:
        self._ports = ports
        self._connections: dict[tuple[str, str], _Connection] = {}
        self._per_link: Counter[str] = Counter()
        self._items: list[tuple[float, int, RawFrame | Event, str, _Connection]] = []
        self._t0: int | None = None
        self._last_t = 0

    def segment(self, segment: TcpSegment) -> None:
        t = segment.t_us
        if self._t0 is None:
            self._t0 = t
        self._last_t = t
        if segment.dport in self._ports:
            server, client, direction = (segment.dst, segment.dport), \
                (segment.src, segment.sport), "tx"
        elif segment.sport in self._ports:
            server, client, direction = (segment.src, segment.sport), \
                (segment.dst, segment.dport), "rx"
        else:
            return
        connection = self._connection(_endpoint(*server), _endpoint(*client), segment)
        side = connection.tx if direction == "tx" else connection.rx
        if segment.syn:
            side.reassembler.syn(segment.seq)
        for piece in side.reassembler.segment(t, segment.seq, segment.payload):
            self._piece(connection, direction, piece)
        if segment.fin or segment.rst:
            self._close(connection, t, direction, segment.rst)

    def _connection(self, server: str, client: str, segment: TcpSegment) -> _Connection:
        key = (server, client)
        known = self._connections.get(key)
        if known is not None and not (known.closed and segment.syn):
            return known
        self._per_link[server] += 1
        connection = _Connection(server, self._per_link[server], client)
        self._connections[key] = connection
        note = None if segment.syn else "joined mid-stream: the connection's start was " \
                                         "not captured"
        self._add(segment.t_us, Event(0.0, "open", server, connection.conn, client, note),
                  "", connection)
        return connection

    def _piece(self, connection: _Connection, direction: str, piece: Chunk | Gap) -> None:
        side = connection.tx if direction == "tx" else connection.rx
        if isinstance(piece, Gap):
            who = "master to device" if direction == "tx" else "device to master"
            self._add(piece.t, Event(0.0, "gap", connection.link, connection.conn, note=(
                f"{piece.missing} bytes from {who} missing from the capture")), "", connection)
            frames = side.splitter.interrupt(piece.t, "bytes missing from the capture")
        else:
            frames = side.splitter.feed(piece.data, piece.t)
        for frame in frames:
            self._add(frame.t, frame, direction, connection)

    def _close(self, connection: _Connection, t: float, direction: str, reset: bool) -> None:
        """A FIN ends the sender's direction (the other may go on: half close); a reset
        ends both."""
        how = "reset" if reset else "closed"
        for ended in ("tx", "rx") if reset else (direction,):
            side = connection.tx if ended == "tx" else connection.rx
            for piece in side.reassembler.finish():
                self._piece(connection, ended, piece)
            for frame in side.splitter.interrupt(t, f"connection {how}"):
                self._add(frame.t, frame, ended, connection)
        if not connection.closed:
            connection.closed = True
            by = "device" if direction == "rx" else "master"
            self._add(t, Event(0.0, "close", connection.link, connection.conn,
                               note=f"{how} by the {by}"), "", connection)

    def _add(self, t: float, item: RawFrame | Event, direction: str,
             connection: _Connection) -> None:
        self._items.append((t, len(self._items), item, direction, connection))

    def finish(self) -> None:
        for connection in list(self._connections.values()):
            for direction in ("tx", "rx"):
                side = connection.tx if direction == "tx" else connection.rx
                for piece in side.reassembler.finish():
                    self._piece(connection, direction, piece)
                for frame in side.splitter.interrupt(self._last_t, "the capture ended"):
                    self._add(frame.t, frame, direction, connection)

    def result(self, path: Path, summary: PcapSummary) -> Imported:
        t0 = self._t0 or 0
        links = sorted({c.link for c in self._connections.values()})
        exchanges = Exchanges({link: "modbus-tcp" for link in links})
        records: list[Record] = []
        for t, _order, item, direction, connection in sorted(self._items,
                                                             key=lambda i: i[:2]):
            if isinstance(item, Event):
                records.append(Event((t - t0) / 1e6, item.event, item.link, item.conn, item.peer,
                                     item.note))
            else:
                records.append(exchanges.frame((t - t0) / 1e6, direction, connection.link,
                                               connection.conn, item.data, item.problem))
        header = Header(started=datetime.fromtimestamp(t0 / 1e6, UTC), recorded_with="pcap import",
                        links=tuple(LinkInfo(link, "modbus-tcp", link) for link in links),
                        unit_ids=_unit_ids(records), source=path.name)
        retransmissions = sum(side.reassembler.duplicates
                              for c in self._connections.values() for side in (c.tx, c.rx))
        return Imported(header, tuple(records), summary, retransmissions, tally(records))


def _unit_ids(records: list[Record]) -> tuple[int, ...]:
    return tuple(sorted({r.info.unit_id for r in records if isinstance(r, Frame)
                         and r.info.malformed is None and r.info.unit_id is not None}))


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
