"""The listener of ``edge-agent hj212-platform``: one thread per connected station.

Every packet goes through ``edge_agent.hj212.packet.parse``; a packet that fails is
logged with the reason and counted, never answered. A packet that passes is logged
decoded and answered as the standards say: 9014 echoing the QN of a data upload whose
Flag asks for an answer, 9013 for a notice (1001, 1013, 9015). Split packets are also
logged once reassembled. Commands (``--send``, stdin lines with ``--interactive``) go to a
station once its first valid packet has told who it is. ``--no-ack``, ``--blackhole``
and ``--close-after`` make it misbehave on purpose, for tests of a station's re-sending;
``--unanswered-pno`` leaves one piece of every split upload unanswered. ``--crc`` makes it
a platform that sends (and accepts) a Modbus CRC variant instead of Appendix A's.
"""

from __future__ import annotations

import signal
import socket
import socketserver
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from edge_agent.hj212.crc import CrcVariant
from edge_agent.hj212.framing import PacketStream
from edge_agent.hj212.packet import (
    PacketError,
    ParsedPacket,
    ParseOptions,
    Version,
    encode,
    parse,
)
from edge_agent.hj212.split import Reassembler
from edge_agent.stopsignals import SignalEvent
from edge_agent.tools.hj212platform.log import PlatformLog, describe
from edge_agent.tools.hj212platform.requests import (
    ANSWERS,
    NOTICES,
    Command,
    Station,
    answer_packet,
    command_packet,
)


@dataclass(frozen=True)
class Behaviour:
    """How the platform answers. ``close_after``: close a connection after that many
    packets from it (0: never). ``crc``: the CRC variant of what it sends (a platform
    that insists on the Modbus CRC; ``options.accept_crc`` should hold it too).
    ``unanswered_pno``: never answer that piece of a split upload (0: answer all)."""

    ack: bool = True
    blackhole: bool = False
    close_after: int = 0
    commands: tuple[Command, ...] = ()
    options: ParseOptions = field(default_factory=ParseOptions)
    crc: CrcVariant = CrcVariant.HJ212
    unanswered_pno: int = 0


class _Server(socketserver.ThreadingTCPServer):
    """One thread per station; those threads do not keep the process alive at exit."""

    allow_reuse_address = True
    daemon_threads = True


class _Connection:
    """One station's socket and what is known about it; ``send`` is thread-safe."""

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self.station: Station | None = None
        self.lock = threading.Lock()
        self.reassembler = Reassembler()

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)


class Platform:
    """The simulator: ``serve_forever`` until ``shutdown``; ``counts`` for the summary."""

    def __init__(self, host: str, port: int, behaviour: Behaviour, log: PlatformLog) -> None:
        self.behaviour = behaviour
        self.log = log
        self.counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._connections: dict[str, _Connection] = {}
        platform = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                platform._serve(self.request, self.client_address)

        self.server = _Server((host, port), Handler)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def _count(self, name: str) -> int:
        with self._counts_lock:
            self.counts[name] += 1
            return self.counts[name]

    def _serve(self, sock: socket.socket, address: Any) -> None:
        peer = f"{address[0]}:{address[1]}"
        connection = _Connection(sock, peer)
        self._connections[peer] = connection
        self._count("connections")
        self.log.event("connected", f"{peer} connected", peer=peer)
        stream = PacketStream()
        received = 0
        reason = "station closed the connection"
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                for raw in stream.feed(data):
                    received += 1
                    try:
                        self._handle(connection, raw)
                    except Exception as err:  # a bug must not end the station's session
                        self._count("internal_errors")
                        self.log.event("internal_error", f"{peer} internal error on a "
                                       f"packet: {err!r}", raw.decode("utf-8", "replace"),
                                       peer=peer, error=repr(err))
                    if self.behaviour.close_after and received >= self.behaviour.close_after:
                        reason = f"--close-after {self.behaviour.close_after}"
                        return
        except OSError as err:
            reason = f"connection error: {err}"
        finally:
            self._connections.pop(peer, None)
            if stream.discarded_bytes:
                self.log.event("discarded", f"{peer} {stream.discarded_bytes} bytes outside "
                               "packets discarded", peer=peer, bytes=stream.discarded_bytes)
            self.log.event("closed", f"{peer} closed: {reason}", peer=peer, reason=reason)
            sock.close()

    def _handle(self, connection: _Connection, raw_bytes: bytes) -> None:
        raw = raw_bytes.decode("utf-8", errors="replace")
        peer = connection.peer
        try:
            parsed = parse(raw_bytes, self.behaviour.options)
        except PacketError as err:
            total = self._count("rejected")
            self._count(f"rejected_{err.kind.value}")
            self.log.event("rejected", f"<- {peer} REJECTED ({err.kind.value}): {err}", raw,
                           peer=peer, kind=err.kind.value, error=str(err),
                           rejected_total=total)
            return
        self._count("packets")
        line, fields = describe(parsed)
        self.log.event("packet", f"<- {peer} {line}", raw, peer=peer, **fields)
        packet = parsed.packet
        first = connection.station is None
        if first:
            version = packet.flag.version if packet.flag else Version.HJT212_2005
            connection.station = Station(packet.st, packet.pw, packet.mn, version)
        whole = connection.reassembler.add(packet)
        if whole is not None and whole is not packet:
            self.log.event("reassembled", f"<- {peer} reassembled CN={whole.cn} "
                           f"QN={whole.qn} | {whole.cp}", peer=peer, cn=whole.cn, qn=whole.qn,
                           cp=whole.cp)
        self._answer(connection, parsed)
        if first and not self.behaviour.blackhole:
            for command in self.behaviour.commands:
                self.send_command(connection, command)

    def _answer(self, connection: _Connection, parsed: ParsedPacket) -> None:
        packet = parsed.packet
        if self.behaviour.blackhole or not self.behaviour.ack or packet.cn in ANSWERS:
            return
        if packet.pno is not None and packet.pno == self.behaviour.unanswered_pno:
            self.log.event("unanswered", f"-> {connection.peer} no answer to piece "
                           f"{packet.pno}/{packet.pnum} (--unanswered-pno)",
                           peer=connection.peer, qn=packet.qn, pno=packet.pno)
            return
        if packet.cn in NOTICES:
            cn = "9013"
        elif packet.cn.startswith("2") and packet.flag is not None and packet.flag.ack:
            cn = "9014"
        else:
            return
        if packet.qn is None or len(packet.qn) != 17:
            self.log.event("unanswered", f"-> {connection.peer} no {cn}: QN {packet.qn} is not "
                           "17 digits, nothing to echo", peer=connection.peer, cn=cn)
            return
        assert connection.station is not None
        self._send(connection, encode(answer_packet(cn, packet.qn, connection.station),
                                      crc=self.behaviour.crc),
                   cn, packet.qn, reply_to=packet.cn)

    def send_command(self, connection: _Connection, command: Command) -> None:
        """Send one command to a station whose identity is known."""
        assert connection.station is not None
        packet = command_packet(command, connection.station, datetime.now())
        self._send(connection, encode(packet, crc=self.behaviour.crc), packet.cn,
                   packet.qn or "", reply_to=None)

    def send_to_all(self, command: Command) -> int:
        """Send ``command`` to every station known so far; how many got it."""
        sent = 0
        for connection in list(self._connections.values()):
            if connection.station is not None and not self.behaviour.blackhole:
                self.send_command(connection, command)
                sent += 1
        return sent

    def _send(self, connection: _Connection, raw: str, cn: str, qn: str,
              reply_to: str | None) -> None:
        try:
            connection.send(raw.encode("utf-8"))
        except OSError as err:
            self.log.event("send_failed", f"-> {connection.peer} CN={cn} not sent: {err}",
                           peer=connection.peer, cn=cn, qn=qn, error=str(err))
            return
        self._count(f"sent_{cn}")
        self.log.event("sent", f"-> {connection.peer} CN={cn} QN={qn}", raw,
                       peer=connection.peer, cn=cn, qn=qn, reply_to=reply_to)

    def summary(self) -> None:
        with self._counts_lock:
            counts = dict(self.counts)
        text = ", ".join(f"{name} {value}" for name, value in sorted(counts.items())) or "none"
        self.log.event("summary", f"summary: {text}", counts=counts)


def run_platform(host: str, port: int, behaviour: Behaviour, jsonl: Path | None,
                 interactive: bool, out: IO[str] = sys.stdout) -> int:
    """Serve until SIGTERM/SIGINT (or stdin's end with ``interactive``); 0."""
    from edge_agent.tools.hj212platform.requests import CommandError, parse_command

    log = PlatformLog(out, jsonl)
    platform = Platform(host, port, behaviour, log)
    stop = SignalEvent()  # set by the handlers: no lock to deadlock on (stopsignals.py)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=platform.server.serve_forever, name="hj212-listener",
                     daemon=True).start()
    log.event("listening", f"hj212-platform listening on {host}:{platform.port}",
              host=host, port=platform.port)

    def read_stdin() -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                command = parse_command(line)
            except CommandError as err:
                log.event("bad_command", f"command refused: {err}", error=str(err))
                continue
            count = platform.send_to_all(command)
            log.event("command", f"CN={command.cn} sent to {count} station(s)",
                      cn=command.cn, stations=count)

    if interactive:
        threading.Thread(target=read_stdin, name="hj212-stdin", daemon=True).start()
    try:
        stop.wait()
    finally:
        platform.server.shutdown()
        platform.server.server_close()
        platform.summary()
        log.close()
    return 0


def accepted_variants(names: list[str]) -> frozenset[CrcVariant]:
    """The CRC variants a user allowed (the standard's always)."""
    return frozenset({CrcVariant.HJ212, *(CrcVariant(name) for name in names)})
