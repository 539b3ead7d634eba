"""What every link client has in common: typed errors the poller understands, and the tap
a client shows its traffic to. Which client a link gets is decided above the clients, in
link_clients.py: this module, which they build on, imports none of them.

A poller owns one client per link and hands it to each device's driver in turn. Drivers
raise (or let through) a ``LinkError``: ``transient`` errors are retried and backed off,
the others become BAD readings with ``reason``. Every read is bounded: a device that
sends more than a poll may read gets ``LinkFlooded`` (reason ``flood``). Protocol
modules (drivers/modbus/protocol/transport.py, drivers/serialtext/protocol/) subclass
these errors so the poller never needs to know the protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

from edge_agent.config.schema import Link


class LinkError(Exception):
    """A failed exchange on a link; ``reason`` is the quality reason readings get."""

    reason = "link_error"
    transient = True


class LinkDown(LinkError):
    """Cannot connect or open the port, or the connection broke."""

    reason = "no_connection"


class DeviceTimeout(LinkError):
    """No complete, valid answer in time."""

    reason = "timeout"


class BadResponse(LinkError):
    """An answer that does not fit the request (wrong length, checksum, function)."""

    reason = "bad_response"


class LinkFlooded(BadResponse):
    """The device sent more than one poll may read (its link's read budget): a babbling
    or misconfigured device, or a foreign stream. The client has closed the connection
    or port, so the next poll reopens it after the device's backoff. Not retried within
    the poll: another attempt would only read more of the flood. A kind of bad answer,
    so code that handles ``BadResponse`` (the probe) handles a flood too."""

    reason = "flood"
    transient = False


@dataclass
class ExchangeCounts:
    """What a link client did on the wire, for the technician's diagnostics (``status``,
    the page): requests sent, answers received (an exception reply is an answer),
    requests that got no answer in time, and Modbus exception replies among the answers.

    Written by the poller thread that owns the client (plain int increments); the poller
    credits the difference over one poll to the device it polled."""

    requests: int = 0
    answers: int = 0
    timeouts: int = 0
    exceptions: int = 0

    def copy(self) -> ExchangeCounts:
        return ExchangeCounts(self.requests, self.answers, self.timeouts, self.exceptions)

    def add_since(self, before: ExchangeCounts, now: ExchangeCounts) -> None:
        """Add what happened between the two readings ``before`` and ``now`` (spelled out:
        this runs once per poll, and a loop over the fields cost twice as much)."""
        self.requests += now.requests - before.requests
        self.answers += now.answers - before.answers
        self.timeouts += now.timeouts - before.timeouts
        self.exceptions += now.exceptions - before.exceptions

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _COUNT_NAMES}


_COUNT_NAMES = tuple(f.name for f in fields(ExchangeCounts))


class LinkClient(Protocol):
    """The part of a link client the poller uses; drivers use the protocol's own API.
    A client may also keep ``counts`` (``ExchangeCounts``); the poller reads it when present."""

    def close(self) -> None: ...


@runtime_checkable
class TimeoutAdjustable(Protocol):
    """A client that honours a device's own ``timeout_ms``: the poller calls this before
    each device's poll (None: the link's timeout). Clients without it use the link's."""

    def set_timeout_ms(self, timeout_ms: int | None) -> None: ...


class WireTap(Protocol):
    """Sees every byte a link client sends and receives, as it crosses the wire: the
    recording of a link's traffic (``record:``). Defined here, implemented by a tool
    (edge_agent/tools/capture/recorder.py), given to the client by whoever opens it (the
    poller, through ``OpenTap``). Called from the poller's thread, so every call but
    ``finish`` must return at once; ``finish`` ends the recording when the client is
    closed for good, waiting (bounded) until what was queued is written, so a reload's
    next recorder of the same file starts after it."""

    def opened(self) -> None: ...

    def sent(self, data: bytes) -> None: ...

    def received(self, data: bytes) -> None: ...

    def closed(self) -> None: ...

    def finish(self) -> None: ...


OpenTap = Callable[[Link], WireTap | None]
"""Gives a link's client its tap when the poller opens it: None for a link that is not
recorded (edge_agent/toolbox.py ``record_link`` is the agent's)."""
