"""A primary host application's STATE (Sparkplug 3.0): its JSON payload, and the rule an
edge node applies to the STATE messages it receives.

The host publishes ``{"online": true, "timestamp": <ms>}`` retained at QoS 1 on
``spBv1.0/STATE/{host_id}`` after it subscribes, with ``{"online": false, ...}`` as its
will (tck-id-payloads-state-birth-payload, ...-state-will-message-payload). An edge node
configured with a primary host sends data only while that host is online, and ignores a
STATE whose timestamp is older than the newest it has seen (a retained message from an
earlier session arriving after a newer one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from edge_agent.sparkplug.datatypes import epoch_ms


@dataclass(frozen=True)
class HostState:
    """One STATE message: online or not, and the host's timestamp (ms since the epoch)."""

    online: bool
    timestamp_ms: int


class StateError(ValueError):
    """A STATE payload that is not the 3.0 JSON form; the message says what was found."""


def encode_state(online: bool, now: datetime) -> bytes:
    """The UTF-8 JSON payload of a STATE message."""
    return json.dumps({"online": online, "timestamp": epoch_ms(now)},
                      separators=(",", ":")).encode()


def parse_state(payload: bytes) -> HostState:
    """A STATE payload read; StateError naming what is wrong (a Sparkplug 2.x host sends
    the bare words ONLINE/OFFLINE, which is said so). Any bytes a host or anyone with
    access to its retained topic publishes end here, so nothing else may escape."""
    try:
        document = json.loads(payload.decode("utf-8"))
    except RecursionError as err:  # not a ValueError: it would end the connection
        raise StateError("JSON nested too deeply; expected "
                         '{"online": bool, "timestamp": ms}') from err
    except (UnicodeDecodeError, ValueError) as err:
        words = payload[:20].decode("utf-8", "replace").strip()
        if words in ("ONLINE", "OFFLINE"):
            raise StateError(f"{words!r} is a Sparkplug 2.x STATE; expected 3.0 JSON "
                             '{"online": bool, "timestamp": ms}') from err
        raise StateError(f"not JSON ({err}); expected "
                         '{"online": bool, "timestamp": ms}') from err
    if not isinstance(document, dict):
        raise StateError(f"a JSON {type(document).__name__}; expected an object")
    online, stamp = document.get("online"), document.get("timestamp")
    if not isinstance(online, bool):
        raise StateError(f"online: {online!r}; expected true or false")
    if isinstance(stamp, bool) or not isinstance(stamp, int) or stamp < 0:
        raise StateError(f"timestamp: {stamp!r}; expected milliseconds since the epoch")
    return HostState(online, stamp)


class PrimaryHostWatch:
    """What an edge node knows of its primary host: the newest STATE seen. Starts
    offline: an edge node waits for the host's online STATE before it sends data."""

    def __init__(self) -> None:
        self.current: HostState | None = None
        self.ignored_older = 0  # STATE messages older than the one already seen

    @property
    def online(self) -> bool:
        return self.current is not None and self.current.online

    def update(self, state: HostState) -> bool:
        """Take a received STATE; True when it changed whether the host is online. One
        older than the newest seen is ignored and counted."""
        if self.current is not None and state.timestamp_ms < self.current.timestamp_ms:
            self.ignored_older += 1
            return False
        was = self.online
        self.current = state
        return was != self.online
