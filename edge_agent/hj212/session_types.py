"""What a platform session is given and gives back, apart from the session's machinery:
its settings, an upload, the result of sending one, and what the responder offers it.
The responder (responder.py) and the coming HJ 212 uplink import these without the
session's sockets and threads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from edge_agent.config.schema import Hj212Config
from edge_agent.hj212.crc import CrcVariant
from edge_agent.hj212.packet import ParsedPacket, Version
from edge_agent.hj212.reply import Reply
from edge_agent.hj212.sm4 import key_from_text


@dataclass(frozen=True)
class SessionSettings:
    """Who the station is to this platform and how it delivers. ``timeout_s``/``retries``:
    HJ 212-2017 Table 1's 10 s × 3 for GPRS/4G by default. ``heartbeat_s``: 9015 every
    so often (2025 only; None: none). ``sm4_key``: encrypt what HJ 212-2025 §6.4.4 says.
    ``crc``: the CRC variant sent (a platform that insists on the Modbus CRC; crc.py)."""

    host: str
    port: int
    st: str
    pw: str
    mn: str
    version: Version = Version.HJ212_2025
    ack: bool = True
    timeout_s: float = 10.0
    retries: int = 3
    heartbeat_s: float | None = None
    sm4_key: bytes | None = None
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    crc: CrcVariant = CrcVariant.HJ212


@dataclass(frozen=True)
class Upload:
    """Data for the platform: a CN (2011, 2051…) and its plaintext CP region.
    ``resent``: data kept from an earlier failed upload, sent again (2025: ``RF=1``)."""

    cn: str
    cp: str
    resent: bool = False


@dataclass(frozen=True)
class SendResult:
    """What became of an upload. ``qns``: the QN of each packet (one per split piece);
    ``attempts``: packets written, re-sends included; ``reason``: why not delivered."""

    delivered: bool
    qns: tuple[str, ...]
    attempts: int
    reason: str = ""


class Responder(Protocol):
    """What answers the platform (responder.py): replies to a command, the packets to
    send after each connect (2081 after a restart), and the settings the platform changed
    (timeout/retries by 1000, password by 1072) applied to ``settings``."""

    def respond(self, parsed: ParsedPacket, now: datetime) -> Iterable[Reply]: ...

    def on_connected(self, now: datetime) -> Iterable[Reply]: ...

    def adjust(self, settings: SessionSettings) -> SessionSettings: ...


def session_settings(config: Hj212Config) -> SessionSettings:
    """The session's settings from a station file's HJ 212 uplink (heartbeat 0: none;
    2017 sends none whatever the file says)."""
    key = config.sm4_key.value if config.encrypt and config.sm4_key else None
    version = Version.HJ212_2017 if config.version == 2017 else Version.HJ212_2025
    return SessionSettings(
        host=config.host, port=config.port, st=config.st,
        pw=config.password.value if config.password else "", mn=config.mn,
        version=version, ack=config.ack, timeout_s=config.timeout_s, retries=config.retries,
        heartbeat_s=config.heartbeat_s or None, sm4_key=key_from_text(key) if key else None,
        crc=CrcVariant(config.crc))
