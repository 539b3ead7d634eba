"""The alarms as the running agent has them today: the engine, a sink that logs each
event (one line) and drives the local outputs, and the threads that own output links.

Built only when the station has alarms (``StationConfig.has_alarms``); otherwise the
agent gives its pollers no hook at all. The pollers commit each poll's events with its
sample (Outbox.append) and then emit them here; at start ``restore`` takes every alarm
up from the outbox's ``alarm_state`` and ``outputs_follow`` re-drives the outputs.
A reload calls ``reconfigure`` (edge_agent/alarms/changes.py says which pollers the
agent stops around it); the runtime then stays, even when the new file has no alarms
left, so the pollers' hooks stay valid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from edge_agent.alarms.action import LinkOutputs, OutputThread
from edge_agent.alarms.changes import communication_devices, outputs_key, rules_by_device
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
        self.outputs = tuple(outputs)  # replaced whole by a reload that rebuilds them

    def emit(self, events: Sequence[AlarmEvent]) -> None:
        for event in events:
            worse = event.kind in (EventKind.RAISED, EventKind.ESCALATED)
            log.log(logging.WARNING if worse else logging.INFO, "%s", event.describe())
        for outputs in self.outputs:
            outputs.alarm_events(events)


class AlarmRuntime:
    """Everything alarms need while the agent runs, for one configuration."""

    def __init__(self, config: StationConfig, polled_links: Sequence[str],
                 open_client: Callable[[Link], LinkClient]) -> None:
        """``polled_links``: the links a poller owns (their outputs are written by that
        poller); every other link with outputs gets an ``OutputThread``."""
        self._devices = config.devices
        self._open = open_client
        self._outputs_key = outputs_key(config)
        self.outputs: dict[str, LinkOutputs] = {}
        self.threads: list[OutputThread] = []
        self._sink = LogAndOutputs(())
        self._build_outputs(config, polled_links)
        # the tally counts events and keeps raise times for the health endpoint (tally.py)
        self.tally = AlarmTally(self._sink)
        self.engine = AlarmEngine(rules_by_device(config), self.tally,
                                  communication_devices(config))

    def _build_outputs(self, config: StationConfig, polled_links: Sequence[str],
                       retired: Sequence[AlarmAction] = ()) -> None:
        """The outputs of ``config``, and a thread for each on a link no poller owns;
        ``retired``: outputs to switch off once (no longer configured)."""
        actions = config.alarms.actions if config.alarms is not None else ()
        by_link: dict[str, list[AlarmAction]] = {}
        for action in actions:
            by_link.setdefault(action.link, []).append(action)
        gone: dict[str, list[AlarmAction]] = {}
        for action in retired:
            if action.link in config.links:
                by_link.setdefault(action.link, [])
                gone.setdefault(action.link, []).append(action)
            else:
                log.warning("alarm output %s was on and its link %s is gone: it could not "
                            "be switched off; check it on site", action.name, action.link)
        self.outputs = {name: LinkOutputs(config.links[name], found,
                                          retired=gone.get(name, ()))
                        for name, found in by_link.items()}
        self.threads = [OutputThread(outputs, self._open)
                        for name, outputs in self.outputs.items() if name not in polled_links]
        self._sink.outputs = tuple(self.outputs.values())

    def reconfigure(self, config: StationConfig, polled_links: Sequence[str]
                    ) -> list[AlarmEvent]:
        """Apply a reload's alarm settings; returns the clear events of alarms whose rule
        was removed, not yet committed or emitted (the agent commits them, then calls
        ``engine.emit``). The pollers changes.py names must be stopped meanwhile. Outputs
        whose settings changed are built anew: the old threads stop, every output that was
        (or may have been) on is written off once unless an alarm still active holds it
        (then on), so no beacon is left on for a removed alarm or output."""
        self._devices = config.devices
        cleared = self.engine.reconfigure(rules_by_device(config),
                                          communication_devices(config))
        key = outputs_key(config)
        if key != self._outputs_key:
            for thread in self.threads:
                thread.stop()
            retired = [action for outputs in self.outputs.values()
                       for action in outputs.maybe_on()]
            self._outputs_key = key
            self._build_outputs(config, polled_links, retired)
            self.outputs_follow(self.engine.active())
            for thread in self.threads:
                thread.start()
        return cleared

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
