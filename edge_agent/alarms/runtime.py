"""The alarms as the running agent has them today: the engine, a sink that logs each
event (one line) and drives the local outputs, and the threads that own output links.

Built only when the station has alarms (``StationConfig.has_alarms``); otherwise the
agent gives its pollers no hook at all. The pollers commit each poll's events with its
sample (Outbox.append) and then emit them here; at start ``restore`` takes every alarm
up from the outbox's ``alarm_state`` and ``outputs_follow`` re-drives the outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from edge_agent.alarms.action import LinkOutputs, OutputThread
from edge_agent.alarms.engine import AlarmEngine
from edge_agent.alarms.events import AlarmEvent, EventKind
from edge_agent.alarms.tally import AlarmTally
from edge_agent.config.alarm_settings import AlarmAction
from edge_agent.config.schema import Link, StationConfig
from edge_agent.link import LinkClient
from edge_agent.store.outbox import OutboxError

log = logging.getLogger(__name__)


class SavedAlarms(Protocol):
    """Where the last event of each alarm is kept (the outbox, store/alarmrows.py)."""

    def alarm_state(self) -> list[AlarmEvent]: ...


class LogAndOutputs:
    """The runtime's sink: each event as one journal line (WARNING when an alarm is
    raised or worsens, INFO otherwise), then to every output link."""

    def __init__(self, outputs: Sequence[LinkOutputs]) -> None:
        self._outputs = tuple(outputs)

    def emit(self, events: Sequence[AlarmEvent]) -> None:
        for event in events:
            worse = event.kind in (EventKind.RAISED, EventKind.ESCALATED)
            log.log(logging.WARNING if worse else logging.INFO, "%s", event.describe())
        for outputs in self._outputs:
            outputs.alarm_events(events)


class AlarmRuntime:
    """Everything alarms need while the agent runs, for one configuration."""

    def __init__(self, config: StationConfig, polled_links: Sequence[str],
                 open_client: Callable[[Link], LinkClient]) -> None:
        """``polled_links``: the links a poller owns (their outputs are written by that
        poller); every other link with outputs gets an ``OutputThread``."""
        self._devices = config.devices
        settings = config.alarms
        actions = settings.actions if settings is not None else ()
        by_link: dict[str, list[AlarmAction]] = {}
        for action in actions:
            by_link.setdefault(action.link, []).append(action)
        self.outputs = {name: LinkOutputs(config.links[name], found)
                        for name, found in by_link.items()}
        self.threads = [OutputThread(outputs, open_client)
                        for name, outputs in self.outputs.items() if name not in polled_links]
        communication = [device.id for device in config.devices] \
            if settings is None or settings.communication else []
        # the tally counts events and keeps raise times for the health endpoint (tally.py)
        self.tally = AlarmTally(LogAndOutputs(list(self.outputs.values())))
        self.engine = AlarmEngine({device.id: device.alarms for device in config.devices},
                                  self.tally, communication)

    def outputs_for(self, link: str) -> LinkOutputs | None:
        """The outputs a poller of ``link`` must write between its polls, if any."""
        owned = {thread.outputs.link.name for thread in self.threads}
        return self.outputs.get(link) if link not in owned else None

    def restore(self, outbox: SavedAlarms) -> int:
        """Take up every alarm where the last run left it (the outbox's ``alarm_state``)
        and put the outputs in that state; returns the alarms active again. An outbox
        that cannot be read leaves every alarm inactive (logged): an alarm may then be
        raised again, which is better than never."""
        try:
            saved = outbox.alarm_state()
        except OutboxError as err:
            log.error("alarms: cannot read their saved state (%s); they start inactive", err)
            return 0
        active = self.engine.restore(saved)
        if active:
            log.info("alarms: %d alarm(s) active since before the restart", active)
            self.outputs_follow(self.engine.active())
        return active

    def outputs_follow(self, events: Sequence[AlarmEvent]) -> None:
        """Put the outputs in the state ``events`` (active alarms) call for: after
        ``engine.restore``, so a beacon that was on is on again."""
        for outputs in self.outputs.values():
            outputs.alarm_events(events)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()
        watched = [device for device in self._devices if device.alarms]
        log.info("alarms: rules on %d channel(s) of %d device(s), %d output(s)",
                 sum(len(device.alarms) for device in watched), len(watched),
                 sum(len(outputs.actions) for outputs in self.outputs.values()))

    def stop(self) -> None:
        for thread in self.threads:
            thread.stop()
