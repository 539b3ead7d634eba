"""Generic register-map driver: read what a device's profile lists, decode, judge, publish.

Per poll: read the planned requests (plan.py), decode and judge each read's channels
(values.py ``ReadJudge``, laid out once per planned read), let status words lower
qualities (status.py), then, for instrument-triggered devices (GC cycles, FTIR
measurements), publish only a new analysis (trigger.py).

Failures: a timeout or lost link fails the whole poll (the poller retries and backs off);
a Modbus exception makes only that request's channels BAD. Exception 02 (illegal data
address) on a merged request is isolated by splitting it until the channels that really
fail are found; the split is kept for later polls and logged once, so one bad address
does not blank the rest of the device.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from edge_agent_drivers.modbus.plan import ReadRequest, plan, split
from edge_agent_drivers.modbus.protocol.transport import ModbusExceptionReply, ModbusLinkClient
from edge_agent_drivers.modbus.settings import Channel, ModbusSettings, RegisterKind, TriggerKind
from edge_agent_drivers.modbus.status import apply_status
from edge_agent_drivers.modbus.trigger import (
    ClockError,
    Decision,
    TriggerState,
    decide,
    instrument_time,
    no_analysis_yet,
)

from edge_agent.config.schema import Device
from edge_agent.link import LinkError
from edge_agent.model import PolledReadings, Quality, Reading, Sample
from edge_agent.values import Outcome

log = logging.getLogger(__name__)

_ILLEGAL_ADDRESS = 0x02


class TriggerUnreadable(LinkError):
    """The new-result flag, cycle counter or analysis time could not be read, so whether
    a new analysis exists is unknown: the poll counts as failed (BAD readings, backoff)."""

    reason = "trigger_unreadable"
    transient = False


class ModbusMapDriver:
    """Driver for a device described by a register map (a profile and/or channels)."""

    def __init__(self, device: Device) -> None:
        if not isinstance(device.settings, ModbusSettings):
            raise ValueError(f"device {device.id}: driver modbus needs a register map")
        self.device = device
        self.settings: ModbusSettings = device.settings
        self.requests = plan(self.settings.channels, self.settings.limits)
        self.isolated: dict[str, str] = {}  # channel -> what isolation found, for status
        self.split_reads = 0  # merged reads split after exception 02 (status, the page)
        self._position = {ch.name: index for index, ch in enumerate(self.settings.channels)}
        # Worked out once, so a poll does only what the device needs (issue 11):
        self._names_units = tuple((ch.name, ch.unit) for ch in self.settings.channels)
        status = [ch for ch in self.settings.channels if ch.quality_bits or ch.quality_values]
        self._has_status = bool(status)
        self._raw_names = _raw_names(self.settings, status)
        self._trigger_state = TriggerState()
        self._pending: Decision | None = None
        self._clear_failing = False

    # -- the poller's interface ---------------------------------------------------

    def restore(self, state: str | None) -> None:
        """The trigger state committed with this device's last sample (None: first run)."""
        self._trigger_state = TriggerState.load(state)

    def poll(self, link: ModbusLinkClient, now: datetime) -> Sample | None:
        """This poll's sample, or None when a triggered device has no new analysis."""
        results = self._read_all(link)
        if len(results) != len(self._names_units):  # a plan bug: fail here, in the poller,
            missing = [name for name, _ in self._names_units if name not in results]
            raise AssertionError(  # not in the writer's encoding or the status page
                f"device {self.device.id}: no outcome for channel(s) {missing}")
        # no Reading built here: the outbox encodes from the outcomes (model.PolledReadings)
        readings: Sequence[Reading] = PolledReadings(self.device.id, now, self._names_units,
                                                     results)
        raw = {name: results[name][3] for name in self._raw_names}
        if self._has_status:  # no status word: no rules to look for
            readings = apply_status(readings, self.settings.channels, raw)
        when = self._instrument_time(raw)
        extra = self._stream(raw)
        if self.settings.trigger is None:
            return Sample(self.device.id, now, readings, when, extra)
        if self._awaiting_first_analysis(raw):
            return None
        self._check_trigger_readable(raw, when)
        decision = decide(self.settings.trigger, raw, when, self._trigger_state)
        self._pending = decision
        if not decision.new:
            self._trigger_state = decision.state
            if decision.clear_flag:
                self._clear_flag(link)
            return None
        return Sample(self.device.id, now, readings, when, extra,
                      driver_state=decision.state.dump())

    def _awaiting_first_analysis(self, raw: dict[str, object]) -> bool:
        """A ``timestamp``- or ``counter``-triggered instrument whose time registers are
        all 0 has no analysis to publish yet (trigger.no_analysis_yet). A raised ``flag``
        says outright that there is one, so it is published whatever the clock says."""
        trigger, clock = self.settings.trigger, self.settings.clock
        return trigger is not None and trigger.kind is not TriggerKind.FLAG \
            and clock is not None and no_analysis_yet(clock, raw)

    def _check_trigger_readable(self, raw: dict[str, object], when: datetime | None) -> None:
        trigger = self.settings.trigger
        assert trigger is not None
        if trigger.kind is TriggerKind.TIMESTAMP:
            if when is None:
                raise TriggerUnreadable(f"{self.device.id}: the analysis time is unreadable")
        elif raw.get(trigger.channel) is None:
            raise TriggerUnreadable(f"{self.device.id}: trigger channel '{trigger.channel}' "
                                    "unreadable")

    def after_commit(self, link: ModbusLinkClient, sample: Sample) -> None:
        """The sample is durable: remember its analysis, clear the flag if asked to."""
        decision, self._pending = self._pending, None
        if decision is None or sample.driver_state is None:
            return
        self._trigger_state = decision.state
        if decision.clear_flag:
            self._clear_flag(link)

    def failed_sample(self, now: datetime, reason: str) -> Sample:
        readings = tuple(self._bad(ch, now, reason) for ch in self.settings.channels)
        return Sample(self.device.id, now, readings)

    # -- reading ----------------------------------------------------------------------

    def _read_all(self, link: ModbusLinkClient) -> dict[str, Outcome]:
        results: dict[str, Outcome] = {}
        requests: list[ReadRequest] = []
        for request in self.requests:
            requests.extend(self._read(link, request, results))
        if requests != self.requests:
            self._report_isolation(requests, results)
            self.requests = requests
        return results

    def _read(self, link: ModbusLinkClient, request: ReadRequest,
              results: dict[str, Outcome]) -> list[ReadRequest]:
        """Read one request into ``results``; returns the requests to use from now on."""
        try:
            data = self._fetch(link, request)
        except ModbusExceptionReply as err:
            if err.transient:
                raise
            if err.code == _ILLEGAL_ADDRESS:
                pieces = split(request, self.settings.limits)
                if pieces != [request]:
                    self.split_reads += 1
                    return [kept for piece in pieces
                            for kept in self._read(link, piece, results)]
            for channel in request.channels:
                results[channel.name] = (None, Quality.BAD, err.reason, None)
            return [request]
        results.update(request.judge.outcomes(data))
        return [request]

    def _fetch(self, link: ModbusLinkClient, request: ReadRequest) -> list[int] | list[bool]:
        unit = self.device.unit_id
        if request.register.is_bit:
            return link.read_bits(unit, request.register, request.address, request.count)
        if request.enron:
            return link.read_registers(unit, request.register, request.address,
                                       request.count, enron_32bit=True)
        return link.read_registers(unit, request.register, request.address, request.count)

    def _report_isolation(self, requests: list[ReadRequest],
                          results: dict[str, Outcome]) -> None:
        failing = [ch.name for request in requests for ch in request.channels
                   if results[ch.name][2] == "exception_02" and len(request.channels) == 1]
        for name in failing:
            self.isolated[name] = "answers exception 02 (illegal data address) on its own"
        log.warning("device %s: a merged read answered exception 02 (illegal data address); "
                    "reads are split from now on (%d requests instead of %d)%s",
                    self.device.id, len(requests), len(self.requests),
                    f"; failing on their own: {', '.join(failing)}" if failing else "")

    def _clear_flag(self, link: ModbusLinkClient) -> None:
        """Write 0 to the new-result flag; until that succeeds, polls publish nothing and
        retry the write (``pending_clear``)."""
        trigger = self.settings.trigger
        assert trigger is not None
        channel = next(ch for ch in self.settings.channels if ch.name == trigger.channel)
        try:
            if channel.register is RegisterKind.COIL:
                link.write_coil(self.device.unit_id, channel.address, False)
            else:
                link.write_register(self.device.unit_id, channel.address, 0)
        except LinkError as err:
            if not self._clear_failing:
                log.warning("device %s: could not clear the new-result flag (%s); retrying "
                            "at each poll, publishing nothing new until it is cleared",
                            self.device.id, err)
            self._clear_failing = True
            return
        if self._clear_failing:
            log.info("device %s: new-result flag cleared again", self.device.id)
        self._clear_failing = False
        self._trigger_state = replace(self._trigger_state, pending_clear=False)

    def _instrument_time(self, raw: dict[str, object]) -> datetime | None:
        clock = self.settings.clock
        if clock is None:
            return None
        try:
            return instrument_time(clock, raw)
        except ClockError as err:
            log.debug("device %s: %s", self.device.id, err)
            return None

    def _stream(self, raw: dict[str, object]) -> dict[str, object]:
        name = self.settings.stream_channel
        value = raw.get(name) if name else None
        return {"stream": value} if isinstance(value, int) else {}

    def _bad(self, channel: Channel, now: datetime, reason: str) -> Reading:
        return Reading(self.device.id, channel.name, None, channel.unit, Quality.BAD, now,
                       reason)


def _raw_names(settings: ModbusSettings, status: list[Channel]) -> tuple[str, ...]:
    """The channels whose raw numbers a poll looks at after judging: status words, the
    instrument's clock, the trigger and stream channels (names that are no channel stay
    out, and are looked up as missing, as they always were)."""
    wanted = {ch.name for ch in status}
    if settings.clock is not None:
        wanted.update(settings.clock.channels)
    if settings.trigger is not None:
        wanted.add(settings.trigger.channel)
    if settings.stream_channel:
        wanted.add(settings.stream_channel)
    return tuple(ch.name for ch in settings.channels if ch.name in wanted)
