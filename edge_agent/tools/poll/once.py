"""One look at each device of one link, through the agent's own link client and driver.

The result is what the agent's poller would store for that poll (the same decoding,
qualities and reasons, the same retries within the poll), plus what the technician needs
to check it: the words or text fields each value came from, how long the device took,
and for a triggered device (GC, FTIR) whether its current result is new. Nothing is
stored and nothing is written to the device (readlog.py withholds the writes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from edge_agent_drivers.modbus.driver import ModbusMapDriver
from edge_agent_drivers.modbus.settings import ModbusSettings, TriggerKind
from edge_agent_drivers.modbus.trigger import TriggerState
from edge_agent_drivers.serialtext.driver import SerialTextDriver

from edge_agent.config.schema import Device, Link, PollingPolicy, SerialLink, TcpLink
from edge_agent.i18n import N_, _
from edge_agent.link import DeviceTimeout, LinkClient, LinkDown, LinkError, TimeoutAdjustable
from edge_agent.link_clients import open_link_client
from edge_agent.model import Reading, Sample, utc_now
from edge_agent.poller import every_read_refused
from edge_agent.retry import retry_call
from edge_agent.tools.poll.access import held_port_message, serial_port_held, tcp_hint
from edge_agent.tools.poll.published import published_state
from edge_agent.tools.poll.rawtext import modbus_raw, text_raw
from edge_agent.tools.poll.readlog import KeptText, ModbusReads, ReadOnlyModbus, ReplayedModbus
from edge_agent.tools.probe.diagnose import tcp_problem

log = logging.getLogger(__name__)

# Technician-facing text of this module, in one place.
NEW_RESULT = N_("new result: yes, the service has not published it yet ({what}{last})")
NEW_RESULT_NO_OUTBOX = N_("new result: yes ({what}; no outbox here to compare with, so any "
                        "result counts as new)")
NOT_NEW = N_("new result: no, the service published it already ({what}{last})")
NOT_NEW_FLAG = N_("new result: no, the new-result flag '{flag}' is not set")
NEW_UNKNOWN = N_("new result: unknown ({error})")
AGENT_ERROR = N_("agent_error: unexpected error while polling ({error}); the service would "
               "flag the readings BAD (agent_error): please report it with --log-level debug")
LAST_PUBLISHED = N_("; last published: {key}")
WITHHELD = N_("not written (poll never writes to a device; the service does): {writes}")


@dataclass
class DeviceResult:
    """One device's poll. ``error`` is None exactly when the device answered."""

    device: Device
    link: Link
    readings: Sequence[Reading] = ()  # a tuple, or a poll's PolledReadings
    raw: dict[str, str] = field(default_factory=dict)  # channel -> words or text field
    record: str | None = None  # the text record the values came from
    error: str | None = None
    hints: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # new result?, withheld writes
    elapsed_ms: float = 0.0

    @property
    def answered(self) -> bool:
        return self.error is None


def poll_link(link: Link, devices: Sequence[Device], policy: PollingPolicy,
              outbox: Path) -> Iterator[DeviceResult]:
    """Poll ``devices`` (all on ``link``) once each, in turn, each result as soon as it
    is known; the link is opened for this and closed after. A serial port another
    process holds is not opened at all."""
    if isinstance(link, SerialLink) and serial_port_held(link.port):
        message = held_port_message(link.port, outbox)
        yield from (DeviceResult(device, link, error=message) for device in devices)
        return
    client = open_link_client(link)
    try:
        for device in devices:
            yield _poll_device(client, link, device, policy, outbox)
    finally:
        client.close()


def _poll_device(client: LinkClient, link: Link, device: Device, policy: PollingPolicy,
                 outbox: Path) -> DeviceResult:
    result = DeviceResult(device, link)
    if isinstance(client, TimeoutAdjustable):
        client.set_timeout_ms(device.polling.timeout_ms)
    own = device.polling.retries
    attempts = (policy.retries if own is None else own) + 1
    started = time.monotonic()
    try:
        if isinstance(device.settings, ModbusSettings):
            _poll_modbus(client, device, attempts, policy, outbox, result)
        else:
            _poll_text(client, device, attempts, policy, result)
    except LinkError as err:
        result.error = f"{err.reason}: {err}"
        if isinstance(link, TcpLink) and isinstance(err, LinkDown | DeviceTimeout):
            why = tcp_problem(link.host, link.port, link.timeout_ms / 1000)
            result.hints += [*([why] if why else []), tcp_hint(outbox)]
    except Exception as err:  # a bug must not hide the other devices' values
        log.debug("unexpected error while polling %s", device.id, exc_info=True)
        result.error = _(AGENT_ERROR).format(error=repr(err))
    result.elapsed_ms = (time.monotonic() - started) * 1000
    return result


def _poll_modbus(client: LinkClient, device: Device, attempts: int, policy: PollingPolicy,
                 outbox: Path, result: DeviceResult) -> None:
    """Read every channel (the device's trigger set aside, so values show even when the
    result is not new), then decide "new" with the real triggered driver on the same
    words."""
    settings = device.settings
    assert isinstance(settings, ModbusSettings)
    plain = ModbusMapDriver(replace(device, settings=replace(settings, trigger=None)))
    reads = ModbusReads()
    now = utc_now()
    try:
        sample = _retried(lambda: plain.poll(ReadOnlyModbus(client, reads), now),
                          attempts, policy)
    except LinkError as err:
        result.readings = plain.failed_sample(now, err.reason).readings
        raise
    assert sample is not None  # no trigger: every poll is a sample
    result.readings = sample.readings
    result.raw = modbus_raw(settings, device.unit_id, reads)
    refused = every_read_refused(sample)
    if refused is not None:
        result.error = f"{refused.reason}: {refused}"
    elif settings.trigger is not None:
        try:
            result.notes.append(_newness(client, device, reads, sample, outbox))
        except LinkError as err:  # the service's poll fails the same way (BAD readings)
            result.notes.append(_(NEW_UNKNOWN).format(error=err))
            result.error = f"{err.reason}: {err}"
    if reads.withheld:
        result.notes.append(_(WITHHELD).format(writes="; ".join(reads.withheld)))


def _newness(client: LinkClient, device: Device, reads: ModbusReads, sample: Sample,
             outbox: Path) -> str:
    """Whether the current result is new, as the service's driver decides it (trigger.py)
    against what the service committed last (the outbox's driver state). Raises the
    driver's ``TriggerUnreadable`` when that cannot be told."""
    settings = device.settings
    assert isinstance(settings, ModbusSettings) and settings.trigger is not None
    trigger = settings.trigger
    saved = published_state(outbox, device.id)
    driver = ModbusMapDriver(device)
    driver.restore(saved)
    new = driver.poll(ReplayedModbus(client, reads), sample.acquired_at)
    values = {reading.channel: reading.value for reading in sample.readings}
    if trigger.kind is TriggerKind.TIMESTAMP:
        when = sample.instrument_time
        what = _("analysis time {time}").format(time=when.isoformat() if when else "?")
    else:
        what = f"{trigger.kind.value} '{trigger.channel}' = {values.get(trigger.channel)}"
    key = TriggerState.load(saved).key
    last = _(LAST_PUBLISHED).format(key=key) if key is not None else ""
    if new is not None:
        return _(NEW_RESULT).format(what=what, last=last) if saved is not None \
            else _(NEW_RESULT_NO_OUTBOX).format(what=what)
    if trigger.kind is TriggerKind.FLAG and not values.get(trigger.channel):
        return _(NOT_NEW_FLAG).format(flag=trigger.channel)
    return _(NOT_NEW).format(what=what, last=last)


def _poll_text(client: LinkClient, device: Device, attempts: int, policy: PollingPolicy,
               result: DeviceResult) -> None:
    driver = SerialTextDriver(device)
    kept = KeptText(client)
    now = utc_now()
    try:
        sample = _retried(lambda: driver.poll(kept, now), attempts, policy)
    except LinkError as err:
        result.readings = driver.failed_sample(now, err.reason).readings
        result.record, _ = text_raw(driver, kept.events)
        raise
    result.readings = sample.readings
    result.record, result.raw = text_raw(driver, kept.events)


def _retried(poll: Callable[[], Sample | None], attempts: int,
             policy: PollingPolicy) -> Sample | None:
    """``poll()`` with the retries the service's poller gives an answering device."""
    return retry_call(poll, attempts=attempts, wait_s=policy.retry_wait_s,
                      retry_if=lambda err: isinstance(err, LinkError) and err.transient,
                      sleep=time.sleep)
