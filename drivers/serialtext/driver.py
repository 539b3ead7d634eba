"""Driver for instruments speaking an ASCII protocol described in the station file.

Everything instrument-specific is configuration (``text:`` block or profile, see
docs/serial-text.md); this class only connects the pieces: the link client moves
bytes, ``Deframer`` finds frames, ``parse_record`` turns a record into values.

Request mode: one request, one answer per poll. No answer in time is ``timeout``; an
answer with a bad checksum or the wrong shape is ``bad_checksum`` / ``bad_frame``. These
are transient LinkErrors, so the poller retries, backs off, logs the outage once and
counts it, and the sample carries BAD readings with the reason.

Stream mode: each poll takes everything the instrument sent since the last poll and
publishes the **latest** complete record (the poller stores one sample per poll; older
records of the same poll are counted as ``superseded``). Bad frames among good ones are
counted and logged once per kind, but do not spoil the poll; only when no good record
arrived before the timeout does the poll fail, with the reason of the last bad frame,
or ``timeout`` when nothing usable arrived at all.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from edge_agent_drivers.serialtext.protocol.client import BadFrame, TextLinkClient
from edge_agent_drivers.serialtext.protocol.escapes import show
from edge_agent_drivers.serialtext.protocol.framing import Deframer, Frame, FrameEvent, FrameFault
from edge_agent_drivers.serialtext.protocol.parse import Record, RecordError, accepts, parse_record
from edge_agent_drivers.serialtext.protocol.settings import TextMode, TextSettings

from edge_agent.config.schema import Device
from edge_agent.link import DeviceTimeout
from edge_agent.model import Quality, Reading, Sample

log = logging.getLogger(__name__)


class SerialTextDriver:
    """Polls one text-protocol device; keeps its partial input between stream polls."""

    def __init__(self, device: Device) -> None:
        if not isinstance(device.settings, TextSettings):
            raise ValueError(f"device {device.id}: driver serial-text needs a text: block")
        self.device = device
        self.settings: TextSettings = device.settings
        self.deframer = Deframer(self.settings.framing, self.settings.checksum)
        self.events: Counter[str] = Counter()  # bad frames, skipped and superseded records

    def poll(self, link: TextLinkClient, now: datetime) -> Sample:
        timeout_ms = self.device.polling.timeout_ms
        if self.settings.mode is TextMode.REQUEST:
            events = link.ask(self.settings.request, self.deframer, self._is_answer,
                              timeout_ms)
        else:
            events = link.listen(self.deframer, self._is_record, timeout_ms)
        return self.sample_from(events, now)

    def sample_from(self, events: list[FrameEvent], now: datetime) -> Sample:
        """The sample the frames of one poll give (pure: the fixtures replay through it).
        Raises BadFrame or DeviceTimeout as ``poll`` does."""
        if self.settings.mode is TextMode.REQUEST:
            record = self._answer(events)
        else:
            record = self._latest(events)
        readings = tuple(
            Reading(self.device.id, value.name, value.value, value.unit, value.quality, now,
                    value.reason, record.instrument_time)
            for value in record.values)
        return Sample(self.device.id, now, readings, record.instrument_time)

    def failed_sample(self, now: datetime, reason: str) -> Sample:
        readings = tuple(Reading(self.device.id, channel.name, None, channel.unit,
                                 Quality.BAD, now, reason)
                         for channel in self.settings.record.channels)
        return Sample(self.device.id, now, readings)

    def _is_record(self, event: FrameEvent) -> bool:
        return isinstance(event, Frame) and accepts(event.body, self.settings.record)

    def _is_answer(self, event: FrameEvent) -> bool:
        return isinstance(event, FrameFault) or self._is_record(event)

    def _answer(self, events: list[FrameEvent]) -> Record:
        """The first answer among ``events``; other records before it (an echo, another
        message type) are skipped."""
        for event in events:
            if isinstance(event, FrameFault):
                self.events[event.reason] += 1
                raise BadFrame(event.reason, f"{self.device.id}: {event.detail}")
            if not self._is_record(event):
                self.events["skipped_record"] += 1
                continue
            try:
                return parse_record(event.body, self.settings.record)
            except RecordError as err:
                self.events[err.reason] += 1
                raise BadFrame(err.reason, f"{self.device.id}: {err}") from err
        raise DeviceTimeout(f"{self.device.id}: no complete answer to "
                            f"{show(self.settings.request)} in time{self._unfinished()}")

    def _latest(self, events: list[FrameEvent]) -> Record:
        """The last good record among ``events``; bad ones are counted and logged once."""
        latest: Record | None = None
        last_fault: BadFrame | None = None
        for event in events:
            if isinstance(event, FrameFault):
                last_fault = self._note(event.reason, event.detail)
            elif not self._is_record(event):
                self.events["skipped_record"] += 1
            else:
                try:
                    record = parse_record(event.body, self.settings.record)
                except RecordError as err:
                    last_fault = self._note(err.reason, str(err))
                    continue
                if latest is not None:
                    self.events["superseded"] += 1
                latest = record
        if latest is not None:
            return latest
        if last_fault is not None:
            raise last_fault
        raise DeviceTimeout(f"{self.device.id}: no complete record arrived in time"
                            f"{self._unfinished()}")

    def _unfinished(self) -> str:
        pending = self.deframer.pending
        return f" (unfinished: {show(pending, 60)})" if pending else ""

    def _note(self, reason: str, detail: str) -> BadFrame:
        """Count a bad frame; log the first of each kind (later ones are only counted)."""
        self.events[reason] += 1
        if self.events[reason] == 1:
            log.warning("device %s: %s: %s (further ones are counted, not logged)",
                        self.device.id, reason, detail)
        return BadFrame(reason, f"{self.device.id}: {detail}")
