"""Request planning: which reads cover a device's channels. A pure function with table tests.

Rules, in the order they bind:

* one request reads one table (coils, discrete inputs, holding, input registers), and
  Enron/Daniel 32-bit addresses are never mixed with ordinary 16-bit registers;
* a request stays within the Modbus limits (125 registers, 2000 bits; 60 Enron values so
  the byte count fits a byte) and any smaller per-device limit;
* channels that touch or overlap are merged; channels up to ``max_gap`` addresses apart
  are merged too, reading the gap and throwing it away (fewer round trips on a slow bus);
* a gap is never read if it holds an address the profile marks as forbidden (registers
  that some instruments answer with an exception, or that have side effects when read);
* ``alone`` channels (found to break merged reads: see the driver's exception-02
  isolation) get a request of their own.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cached_property

from edge_agent_drivers.modbus.settings import AddressRange, Channel, ReadLimits, RegisterKind
from edge_agent_drivers.modbus.values import ReadJudge

_MODBUS_LIMITS = ReadLimits()


@dataclass(frozen=True)
class ReadRequest:
    """One Modbus read: ``count`` addresses from ``address``, covering ``channels``."""

    register: RegisterKind
    address: int
    count: int
    channels: tuple[Channel, ...]
    enron: bool = False

    @cached_property
    def judge(self) -> ReadJudge:
        """How this read's answer becomes judged values: slots worked out on first use and
        kept with the request, which lives as long as the device's plan (not compared,
        not hashed: two equal requests judge alike)."""
        return ReadJudge(self.channels, self.address, self.count,
                         bits=self.register.is_bit, enron=self.enron)

    @property
    def end(self) -> int:
        """First address after the request."""
        return self.address + self.count

    @property
    def has_gaps(self) -> bool:
        """Whether some addresses read belong to no channel (filled gaps)."""
        covered = set()
        for channel in self.channels:
            covered.update(range(channel.address, channel.address + channel.span))
        return len(covered) < self.count


def plan(channels: Sequence[Channel], limits: ReadLimits = _MODBUS_LIMITS,
         alone: Collection[str] = ()) -> list[ReadRequest]:
    """Group ``channels`` into as few reads as ``limits`` allow, in table/address order."""
    requests: list[ReadRequest] = []
    ordered = sorted(channels, key=lambda ch: (ch.register.value, ch.enron, ch.address,
                                               -ch.span))
    group: list[Channel] = []
    group_end = 0  # one past the group's last address, kept as it grows (not re-scanned)
    for channel in ordered:
        if group and channel.name not in alone and group[0].name not in alone \
                and _fits(group[0], group_end, channel, limits):
            group.append(channel)
            group_end = max(group_end, channel.address + channel.span)
            continue
        if group:
            requests.append(_request(group))
        group, group_end = [channel], channel.address + channel.span
    if group:
        requests.append(_request(group))
    return requests


def _fits(head: Channel, end: int, channel: Channel, limits: ReadLimits) -> bool:
    """Whether ``channel`` joins the group that starts with ``head`` and ends before
    ``end``: same table and Enron mode, within one request's size, across a gap no wider
    than ``max_gap`` that holds no forbidden address."""
    if channel.register is not head.register or channel.enron != head.enron:
        return False
    start = head.address
    new_end = max(end, channel.address + channel.span)
    if new_end - start > limits.per_request(head.register, head.enron):
        return False
    gap = channel.address - end
    if gap <= 0:
        return True
    return gap <= limits.max_gap and not _forbidden(head.register, end, channel.address,
                                                    limits.forbidden)


def _forbidden(register: RegisterKind, first: int, stop: int,
               forbidden: Sequence[AddressRange]) -> bool:
    """Whether any address in [first, stop) of ``register`` is forbidden."""
    return any(zone.register is register and zone.first < stop and first <= zone.last
               for zone in forbidden)


def _request(group: list[Channel]) -> ReadRequest:
    start = group[0].address
    end = max(ch.address + ch.span for ch in group)
    return ReadRequest(group[0].register, start, end - start, tuple(group), group[0].enron)


def split(request: ReadRequest, limits: ReadLimits) -> list[ReadRequest]:
    """Smaller requests covering the same channels, for isolating an illegal address:
    first without filled gaps; a request already without gaps is cut in two halves
    by channel. A single-channel request cannot be split (returns itself)."""
    if request.has_gaps:
        no_gaps = ReadLimits(limits.max_registers, limits.max_bits, 0, limits.forbidden)
        pieces = plan(request.channels, no_gaps)
        if len(pieces) > 1:
            return pieces
    starts = sorted({ch.address for ch in request.channels})
    if len(starts) < 2:
        return [request]
    middle = starts[len(starts) // 2]
    low = [ch for ch in request.channels if ch.address < middle]
    high = [ch for ch in request.channels if ch.address >= middle]
    return [_request(low), _request(high)]
