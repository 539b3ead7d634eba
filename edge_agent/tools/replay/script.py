"""A capture read as a device's script: its requests, each with the answer it got.

Both replay modes start here. Requests keep their recorded order across the link's
connections (a master that reconnected is still one conversation with one device).
Answers without a request (a capture that joined mid-exchange) are left out: nothing
asked for them, so nothing can be replayed for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.tools.capture.files import Capture
from edge_agent.tools.capture.format import TEXT, Frame
from edge_agent.tools.capture.modbus_frames import rtu_adu, tcp_adu


class ScriptError(ValueError):
    """The capture cannot be replayed as asked (no such link, nothing recorded)."""


@dataclass(frozen=True)
class Exchange:
    """One recorded request and its answer (None: the device did not answer)."""

    request: Frame
    answer: Frame | None


@dataclass(frozen=True)
class Script:
    """What one link of a capture held, ready to replay."""

    link: str
    protocol: str
    exchanges: tuple[Exchange, ...]


def load_script(capture: Capture, link: str | None = None) -> Script:
    """The exchanges of ``link`` (may be omitted when the capture has one link)."""
    names = [known.name for known in capture.header.links]
    if link is None:
        if len(names) != 1:
            raise ScriptError(f"the capture holds {len(names)} links ({', '.join(names)}): "
                              "say which one to replay")
        link = names[0]
    if link not in names:
        raise ScriptError(f"the capture has no link {link!r} (it has: {', '.join(names)})")
    if capture.header.link(link).protocol == TEXT:
        raise ScriptError(f"link {link!r} is a text link: replay it with 'replay text'")
    frames = capture.frames(link)
    answers = {f.xid: f for f in frames if f.dir == "rx" and f.xid is not None}
    exchanges = tuple(Exchange(f, answers.get(f.xid) if f.xid is not None else None)
                      for f in frames if f.dir == "tx")
    if not exchanges:
        raise ScriptError(f"link {link!r} holds no request to replay")
    return Script(link, capture.header.link(link).protocol, exchanges)


def adu(data: bytes, protocol: str) -> bytes | None:
    """Unit id + PDU of a frame whose framing is sound, None otherwise."""
    if protocol == "modbus-tcp":
        return tcp_adu(data)
    if protocol == "modbus-rtu":
        return rtu_adu(data)
    return None
