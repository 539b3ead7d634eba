"""One station's TCP session with one HJ 212 platform: send, be acknowledged, answer.

Delivery (HJ 212-2017 §6.2 and Table 1; HJ 212-2025 §8.1.2):
* **Acknowledgement requested** (Flag ack bit): a packet is delivered when the platform's
  9014 with the same QN arrives. Unanswered within ``timeout_s`` it is sent again, with the
  same QN, up to ``retries`` more times; under 2025 each re-sent copy carries ``RF=1``.
  After that ``send`` returns "not delivered" and the caller keeps the data for later
  (then ``Upload.resent`` marks it ``RF=1`` under 2025). A split packet is delivered when
  every piece is.
* **No acknowledgement requested**: delivered means the platform's TCP stack has
  acknowledged every byte (the socket's send queue, Linux ``SIOCOUTQ``, drained within
  ``timeout_s``). Not that the platform stored it: a platform that crashes after its
  kernel took the bytes loses them, and nothing tells the station. That is the most an
  unacknowledged protocol can honestly claim; written in docs/hj212.md.
* Not connected: ``send`` returns "not delivered" at once, it never waits for a
  connection (the caller's other uplinks must not wait for this one).

Threads: ``send`` may be called from any thread; one packet is in flight at a time (the
standards' flows wait for each answer). A session thread connects (exponential backoff,
retry.Backoff) and reads; a command thread hands platform commands to the responder and
sends its replies; a heartbeat thread sends 9015 (2025) every ``heartbeat_s``. A heartbeat
not answered by 9013 after the retries closes the connection: a black-holed link shows
no other sign. CRC: the station sends the variant ``SessionSettings.crc`` names
(Appendix A's by default) and accepts every variant crc.py knows, any hex case, on what
it receives. Garbage from the platform is counted (``bad_packets``,
``garbage_bytes``), logged at the first occurrence and every 100th, never fatal.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import queue
import socket
import struct
import termios
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from edge_agent.hj212 import sm4
from edge_agent.hj212.crc import CrcVariant
from edge_agent.hj212.framing import PacketStream
from edge_agent.hj212.packet import (
    Flag,
    Packet,
    PacketError,
    ParsedPacket,
    ParseOptions,
    QnClock,
    Version,
    encode,
    parse,
    qn_time,
)
from edge_agent.hj212.reply import Reply
from edge_agent.hj212.session_types import Responder, SendResult, SessionSettings, Upload
from edge_agent.hj212.split import split_packet
from edge_agent.retry import Backoff

log = logging.getLogger(__name__)

ANSWER_CNS = frozenset({"9013", "9014"})  # what ends a wait for an acknowledgement
IGNORED_CNS = frozenset({"9011", "9012"})  # answers to requests: the station sends none
# Lenient on what arrives: a platform's packets are taken with any CRC variant crc.py
# knows (the packet's notes name it), whatever the station sends (``SessionSettings.crc``).
ANY_CRC = frozenset(CrcVariant)
COUNT_NAMES = ("sent", "acknowledged", "resent", "timeouts", "not_delivered", "bad_packets",
               "garbage_bytes", "commands", "heartbeats", "connects", "disconnects",
               "internal_errors", "unmatched_answers")
# A platform answering late (after the station gave up) does so for every upload of an
# outage: each such answer is counted, and logged at most this often.
UNMATCHED_LOG_EVERY_S = 60.0
_DRAIN_FIRST_S = 0.0005
_DRAIN_POLL_S = 0.01


class _Waiter:
    """One QN awaiting its 9014/9013; ``answered`` False when the connection dropped."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.answered = False


class NotConnected(OSError):
    """The session has no connection to write to."""


class Session:
    """The session with one platform; ``start``, ``send`` from any thread, ``stop``."""

    def __init__(self, settings: SessionSettings, responder: Responder | None = None,
                 now: Callable[[], datetime] = datetime.now) -> None:
        self.settings = settings
        self.responder = responder
        self._now = now
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._waiters: dict[str, _Waiter] = {}
        self._waiters_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._unmatched_logged_at: float | None = None  # time.monotonic() of the last log
        self._qn = QnClock()
        self._commands: queue.Queue[ParsedPacket | None] = queue.Queue(maxsize=64)
        self._threads: list[threading.Thread] = []
        self.name = f"{settings.host}:{settings.port}"

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> Session:
        """Start connecting (in the background); returns at once."""
        targets = [(self._run, "session"), (self._serve_commands, "commands")]
        if self.settings.heartbeat_s and self.settings.version == Version.HJ212_2025:
            targets.append((self._heartbeats, "heartbeat"))
        for target, what in targets:
            thread = threading.Thread(target=target, name=f"hj212-{what}-{self.name}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close the connection and end the threads; waiting sends return not delivered."""
        self._stop.set()
        self._drop_connection()
        for thread in self._threads:
            thread.join(timeout_s)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def counts(self) -> dict[str, int]:
        """The counters, every name present (for metrics)."""
        with self._counts_lock:
            return {name: self._counts[name] for name in COUNT_NAMES}

    def _count(self, name: str, amount: int = 1) -> int:
        with self._counts_lock:
            self._counts[name] += amount
            return self._counts[name]

    def live(self) -> SessionSettings:
        """The settings in force: the station file's, with what the platform changed."""
        return self.responder.adjust(self.settings) if self.responder else self.settings

    # -- sending --------------------------------------------------------------------
    def send(self, upload: Upload) -> SendResult:
        """Send one upload and wait until it is delivered or given up (see the module
        docstring); at most ``timeout_s × (retries + 1)`` per piece."""
        live = self.live()
        rf = upload.resent and live.version == Version.HJ212_2025
        with self._send_lock:
            pieces = self._pieces(live, upload.cn, upload.cp, rf)
            return self._deliver(live, pieces)

    def _pieces(self, live: SessionSettings, cn: str, cp: str, rf: bool) -> list[Packet]:
        """The packet(s) of an upload, with fresh QNs (the caller holds the send lock)."""
        packet = Packet(st=live.st, cn=cn, pw=live.pw, mn=live.mn, cp=cp,
                        qn=self._qn.next(self._now()), flag=Flag(live.version, ack=live.ack),
                        rf=rf)
        pieces = split_packet(packet)
        if len(pieces) > 1:  # the pieces took consecutive QNs: the clock must not reuse them
            self._qn.next(qn_time(pieces[-1].qn or ""))
        return pieces

    def _deliver(self, live: SessionSettings, pieces: list[Packet]) -> SendResult:
        attempts = 0
        for piece in pieces:
            done, used, reason = self._transmit(live, piece)
            attempts += used
            if not done:
                self._count("not_delivered")
                return SendResult(False, tuple(p.qn or "" for p in pieces), attempts, reason)
        return SendResult(True, tuple(p.qn or "" for p in pieces), attempts)

    def _transmit(self, live: SessionSettings, packet: Packet) -> tuple[bool, int, str]:
        """(delivered, packets written, reason) for one packet, re-sent on timeout."""
        attempt = 0
        while True:
            attempt += 1
            waiter = self._expect(packet.qn or "") if live.ack else None
            try:
                self._write(self._encode(live, packet))
            except OSError as err:
                self._forget(packet.qn or "")
                return False, attempt - 1, f"not sent: {err}"
            self._count("sent")
            if attempt > 1:
                self._count("resent")
            if waiter is None:
                if self._drained(live.timeout_s):
                    return True, attempt, ""
                return False, attempt, (f"the platform's TCP stack did not take the data "
                                        f"within {live.timeout_s:g} s")
            answered = waiter.event.wait(live.timeout_s) and waiter.answered
            self._forget(packet.qn or "")
            if answered:
                self._count("acknowledged")
                return True, attempt, ""
            if not self.connected:
                return False, attempt, "connection lost before the answer"
            self._count("timeouts")
            if attempt > live.retries:
                return False, attempt, (f"no answer with QN {packet.qn} after {attempt} "
                                        f"sends {live.timeout_s:g} s apart")
            if live.version == Version.HJ212_2025:
                packet = replace(packet, rf=True)

    def _encode(self, live: SessionSettings, packet: Packet) -> bytes:
        key = live.sm4_key if (live.version == Version.HJ212_2025
                               and sm4.needs_encryption(packet.cn)) else None
        return encode(packet, key, crc=live.crc).encode("utf-8")

    def _write(self, data: bytes) -> None:
        with self._sock_lock:
            sock = self._sock
        if sock is None:
            raise NotConnected(f"not connected to {self.name}")
        try:
            sock.sendall(data)
        except OSError:
            self._drop_connection()  # a half-written packet spoils the stream
            raise

    def _drained(self, timeout_s: float) -> bool:
        """Whether the socket's send queue (bytes not yet acknowledged by the peer's TCP)
        empties within ``timeout_s``; polled, because Linux offers no wait for it: first
        after 0.5 ms (a LAN acknowledges that fast), then doubling up to 10 ms."""
        deadline = timeout_s
        pause = _DRAIN_FIRST_S
        while True:
            with self._sock_lock:
                sock = self._sock
            if sock is None:
                return False
            try:
                raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
            except OSError:
                return False
            if struct.unpack("i", raw)[0] == 0:
                return True
            if deadline <= 0 or self._stop.wait(pause):
                return False
            deadline -= pause
            pause = min(pause * 2, _DRAIN_POLL_S)

    def _expect(self, qn: str) -> _Waiter:
        waiter = _Waiter()
        with self._waiters_lock:
            self._waiters[qn] = waiter
        return waiter

    def _forget(self, qn: str) -> None:
        with self._waiters_lock:
            self._waiters.pop(qn, None)

    def _send_reply(self, reply: Reply) -> None:
        """Send what the responder asked for: an answer once, an upload as ``send`` does."""
        live = self.live()
        with self._send_lock:
            if reply.answer_to is None:
                self._deliver(live, self._pieces(live, reply.cn, reply.cp, False))
                return
            packet = Packet(st=live.st, cn=reply.cn, pw=live.pw, mn=live.mn, cp=reply.cp,
                            qn=reply.answer_to, flag=Flag(live.version))
            try:
                self._write(encode(packet, echoed_qn=True, crc=live.crc).encode("utf-8"))
                self._count("sent")
            except OSError as err:
                log.warning("HJ 212 %s: answer CN=%s not sent: %s", self.name, reply.cn, err)

    # -- connection and reading -----------------------------------------------------
    def _run(self) -> None:
        backoff = Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s)
        failures = 0
        while not self._stop.is_set():
            live = self.live()
            try:
                sock = socket.create_connection((live.host, live.port), timeout=live.timeout_s)
            except OSError as err:
                failures += 1
                if failures == 1:
                    log.error("HJ 212 platform %s: cannot connect: %s (retrying)", self.name,
                              err)
                self._stop.wait(backoff.delay_s(failures))
                continue
            failures = 0
            sock.settimeout(live.timeout_s)
            with self._sock_lock:
                self._sock = sock
            self._connected.set()
            self._count("connects")
            log.info("HJ 212 platform %s: connected", self.name)
            self._queue_command(None)  # what to send after a connect (2081)
            reason = self._read(sock)
            self._drop_connection()
            if not self._stop.is_set():
                self._count("disconnects")
                log.warning("HJ 212 platform %s: connection lost: %s", self.name, reason)
                self._stop.wait(backoff.delay_s(1))

    def _read(self, sock: socket.socket) -> str:
        stream = PacketStream()
        while not self._stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as err:
                return str(err)
            if not data:
                return "the platform closed the connection"
            before = stream.discarded_bytes
            packets = stream.feed(data)
            if stream.discarded_bytes > before:
                self._bad("garbage_bytes", f"{stream.discarded_bytes - before} bytes outside "
                          "packets", stream.discarded_bytes - before)
            for raw in packets:
                self._incoming(raw)
        return "stopped"

    def _drop_connection(self) -> None:
        """Close the socket (the reader then reconnects) and wake every waiting send."""
        with self._sock_lock:
            sock, self._sock = self._sock, None
            self._connected.clear()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._waiters_lock:
            for waiter in self._waiters.values():
                waiter.event.set()

    def _bad(self, name: str, what: str, amount: int = 1) -> None:
        total = self._count(name, amount)
        if name != "bad_packets" or total == 1 or total % 100 == 0:
            log.warning("HJ 212 platform %s: %s (%s so far: %d)", self.name, what, name, total)

    def _unmatched(self, packet: Packet) -> None:
        """An answer nothing waits for: a 9014/9013 whose QN no upload waits for (a late
        answer, or a platform's own QN: answers are matched by QN alone), or a 9011/9012,
        which answer requests the station never sends. Counted (``unmatched_answers``),
        logged once per ``UNMATCHED_LOG_EVERY_S`` with the count so far: a platform that
        sends one with every packet must not fill the journal."""
        total = self._count("unmatched_answers")
        now = time.monotonic()
        if (self._unmatched_logged_at is None
                or now - self._unmatched_logged_at >= UNMATCHED_LOG_EVERY_S):
            self._unmatched_logged_at = now
            log.info("HJ 212 platform %s: CN=%s QN=%s answers nothing waiting (a late "
                     "answer, or one to a request never sent; unmatched_answers so far: %d)",
                     self.name, packet.cn, packet.qn, total)

    def _incoming(self, raw: bytes) -> None:
        """One packet from the platform: an answer ends a wait, a command is queued."""
        live = self.live()
        try:
            parsed = parse(raw, ParseOptions(accept_crc=ANY_CRC, sm4_key=live.sm4_key))
        except PacketError as err:
            self._bad("bad_packets", f"packet refused ({err.kind.value}): {err}")
            return
        packet = parsed.packet
        if packet.cn in ANSWER_CNS:
            with self._waiters_lock:
                waiter = self._waiters.get(packet.qn or "")
            if waiter is not None:
                waiter.answered = True
                waiter.event.set()
            else:
                self._unmatched(packet)
        elif packet.cn in IGNORED_CNS:  # an answer to a request the station never sends
            self._unmatched(packet)
        elif packet.mn != live.mn:
            self._bad("bad_packets", f"CN={packet.cn} for MN={packet.mn}, not this station's")
        else:
            self._count("commands")
            self._queue_command(parsed)

    def _queue_command(self, parsed: ParsedPacket | None) -> None:
        try:
            self._commands.put_nowait(parsed)
        except queue.Full:
            self._bad("bad_packets", "command dropped: 64 commands already waiting")

    def _serve_commands(self) -> None:
        while not self._stop.is_set():
            try:
                parsed = self._commands.get(timeout=0.2)
            except queue.Empty:
                continue
            if self.responder is None:
                continue
            try:
                now = self._now()
                replies = self.responder.on_connected(now) if parsed is None \
                    else self.responder.respond(parsed, now)
                for reply in replies:
                    self._send_reply(reply)
            except Exception:  # a responder bug must not end the session
                self._count("internal_errors")
                log.exception("HJ 212 platform %s: answering a command failed", self.name)

    def _heartbeats(self) -> None:
        """9015 every ``heartbeat_s``; one left unanswered after the retries (when answers
        are requested) closes the connection, which the session then re-opens."""
        interval = self.settings.heartbeat_s or 0
        while not self._stop.wait(interval):
            if not self.connected:
                continue
            live = self.live()
            with self._send_lock:
                result = self._deliver(live, self._pieces(live, "9015", "", False))
            self._count("heartbeats")
            if not result.delivered and self.connected:
                log.warning("HJ 212 platform %s: heartbeat not answered (%s); reconnecting",
                            self.name, result.reason)
                self._drop_connection()
