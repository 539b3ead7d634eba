"""The platform's log: one readable line per packet plus the raw packet (stdout), and, with
``--jsonl FILE``, one JSON object per event for tests and scripts.

Events: ``listening`` (port), ``connected``/``closed`` (peer), ``packet`` (a packet that
passed every check, decoded), ``rejected`` (a packet that failed one: ``kind`` and
``error`` say which, ``rejected_total`` counts them), ``sent`` (an answer or a command),
``summary`` (the counts, at exit).
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from edge_agent.hj212.cp import parse_region
from edge_agent.hj212.packet import PacketError, ParsedPacket, Version
from edge_agent.tools.hj212platform.requests import NAMES

VERSION_NAMES = {Version.HJT212_2005: "2005", Version.HJ212_2017: "2017",
                 Version.HJ212_2025: "2025"}


class PlatformLog:
    """Writes both logs; safe to call from every connection's thread."""

    def __init__(self, out: IO[str], jsonl: Path | None) -> None:
        self._out = out
        self._jsonl = jsonl.open("a", encoding="utf-8") if jsonl else None
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._jsonl:
            self._jsonl.close()

    def event(self, event: str, line: str, raw: str | None = None, **fields: Any) -> None:
        """Log one event: ``line`` (and ``raw`` indented below) to stdout, all fields to
        the JSON-lines file."""
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        with self._lock:
            self._out.write(f"{stamp} {line}\n")
            if raw is not None:
                self._out.write(f"    {raw.rstrip()}\n")
            self._out.flush()
            if self._jsonl:
                record = {"event": event, **fields}
                if raw is not None:
                    record["raw"] = raw
                self._jsonl.write(json.dumps(record, ensure_ascii=False) + "\n")
                self._jsonl.flush()


def describe(parsed: ParsedPacket) -> tuple[str, dict[str, Any]]:
    """The readable line and the JSON fields of an accepted packet."""
    packet = parsed.packet
    flag = packet.flag
    version = VERSION_NAMES[flag.version] if flag else "2005"
    fields: dict[str, Any] = {
        "qn": packet.qn, "st": packet.st, "cn": packet.cn, "mn": packet.mn,
        "flag": flag.value if flag else None, "version": version,
        "ack_requested": bool(flag and flag.ack), "pnum": packet.pnum, "pno": packet.pno,
        "rf": packet.rf, "cp": packet.cp, "crc_variant": parsed.crc_variant.value,
        "encrypted": parsed.encrypted, "notes": list(parsed.notes),
    }
    words = [f"CN={packet.cn} {NAMES.get(packet.cn, 'unknown command')}",
             f"MN={packet.mn}", f"ST={packet.st}", f"QN={packet.qn}",
             f"HJ212-{version}" + (" ack" if fields["ack_requested"] else "")]
    if packet.pnum is not None:
        words.append(f"piece {packet.pno}/{packet.pnum}")
    if packet.rf:
        words.append("RF=1 (re-sent)")
    if parsed.notes:
        words.append("[" + "; ".join(parsed.notes) + "]")
    try:
        region = parse_region(packet.cp)
        shown = "; ".join(",".join(f"{i.name}={i.value}" for i in group)
                          for group in region.groups)
    except PacketError as err:
        shown = f"(region unreadable: {err})"
    if shown:
        words.append("| " + shown)
    return " ".join(words), fields
