"""Wires a validated station config into running parts: outbox, pollers, uplinks.

Start order: outbox first (so the first poll can commit whether or not a broker was
ever reached), then the health endpoint (health/server.py), then one uplink per
``StationConfig.every_uplink()`` entry (forward/uplink.py; the MQTT ``Forwarder``), then
one poller per link. Stop order: the health endpoint closes, pollers stop, every uplink
at once gets its ``shutdown_grace_s`` for in-flight messages to be acknowledged and
publishes its offline status, then the database is closed.

SIGHUP (``systemctl reload``) re-reads the station file: ``reload`` applies what changed
(which pollers restart, which uplinks start, stop or reconnect, what applies in place,
alarm rules and outputs included, what is refused: edge_agent/reload.py);
an invalid file is refused with every problem logged, and the agent runs on unchanged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.config.schema import StationConfig
from edge_agent.driver import load_driver
from edge_agent.forward.uplink import Uplink, make_uplink
from edge_agent.health.alarms_view import AlarmsSeen, alarms_seen, no_alarms
from edge_agent.health.server import HealthServer
from edge_agent.health.view import AgentView, LinkCounters
from edge_agent.link_clients import open_link_client
from edge_agent.poller import LinkPoller
from edge_agent.stopsignals import SignalEvent
from edge_agent.store.outbox import Outbox, OutboxError
from edge_agent.watchdog import Heartbeat, ServiceSupervisor, stop_budget_s

if TYPE_CHECKING:
    from edge_agent.alarms.runtime import AlarmRuntime
    from edge_agent.reload import ReloadPlan

log = logging.getLogger(__name__)

# A clean stop waits this long for all pollers together: with the forwarder's join slack
# and closing the database it fits in watchdog.STOP_MARGIN_S on top of shutdown_grace_s.
POLLERS_STOP_S = 10.0
_STOP_SLICE_S = 0.5  # between keep-alives while waiting for a poller to stop in a reload


class Agent:
    """The running agent for one station."""

    def __init__(self, config: StationConfig,
                 load: Callable[[Path], StationConfig] = load_config) -> None:
        """``load`` reads the file again for a reload (``run --record`` adjusts it)."""
        self.config = config
        self._load = load
        self._poll_stop = threading.Event()
        self._stuck: list[str] = []  # pollers that did not stop for a reload
        self.outbox = Outbox(config.store.path, config.store.retention,
                             config.store.synchronous)
        try:
            self.outbox.set_uplinks(_routes(config))
            #: name -> running uplink, in configuration order (``mqtt:``'s ``default`` first)
            self.uplinks: dict[str, Uplink] = {
                uplink.name: make_uplink(config.station_id, uplink, self.outbox)
                for uplink in config.every_uplink()}
        except BaseException:
            self.outbox.close()
            raise
        self.outbox.on_append = self._wake_uplinks
        # None without alarms: the pollers then get no hook (nothing on the hot path)
        self.alarms = _alarm_runtime(config, list(config.devices_by_link())) \
            if config.has_alarms() else None
        self.pollers = self._make_pollers()
        self.health = HealthServer(config.health, self.health_view())

    @property
    def forwarder(self) -> Uplink:
        """The first uplink (the ``mqtt:`` section's when there is one): what status
        lines and the unlabelled metrics show."""
        return next(iter(self.uplinks.values()))

    def _wake_uplinks(self) -> None:
        for uplink in list(self.uplinks.values()):
            uplink.wake()

    def _make_pollers(self) -> list[LinkPoller]:
        return [self._make_poller(self.config, name) for name in self.config.devices_by_link()]

    def _make_poller(self, config: StationConfig, link: str) -> LinkPoller:
        """A poller for ``link`` with a stop event of its own, so a reload can restart it
        alone (``stop_polling`` stops them all)."""
        drivers = [load_driver(device) for device in config.devices_by_link()[link]]
        alarms = self.alarms
        return LinkPoller(config.links[link], drivers, self.outbox, config.polling,
                          threading.Event(), alarms=alarms.engine if alarms else None,
                          outputs=alarms.outputs_for(link) if alarms else None)

    def start(self) -> None:
        self.health.start()  # first: its 'drops since start' count starts here
        for uplink in self.uplinks.values():
            uplink.start()
        if self.alarms is not None:
            self.alarms.restore(self.outbox)
            self.alarms.start()
        for poller in self.pollers:
            poller.start()
        devices, links = len(self.config.devices), len(self.pollers)
        log.info("edge-agent running for station %s: %d device%s on %d link%s, outbox %s",
                 self.config.station_id, devices, "s" * (devices != 1), links,
                 "s" * (links != 1), self.config.store.path)

    def dead_threads(self) -> list[str]:
        """Names of started worker threads that have ended although nothing stopped them
        (pollers, each uplink's thread, each live MQTT session's network thread
        ``mqtt-net``). Each survives errors by design; a dead one is a bug, and a restart
        is the cure."""
        if self._poll_stop.is_set():
            return []
        uplinks = list(self.uplinks.values())
        threads = [*(uplink.thread for uplink in uplinks),
                   *(poller.thread for poller in self.pollers)]
        network = [name for uplink in uplinks
                   if (name := uplink.dead_network_thread()) is not None]
        return [*self._stuck,
                *(t.name for t in threads if t.ident is not None and not t.is_alive()),
                *network]

    def health_view(self) -> AgentView:
        """The read-only view the health endpoint serves (health/view.py). Each field
        reads the current attribute when called, so pollers and settings swapped by a
        reload are seen."""
        return AgentView(
            station_id=lambda: self.config.station_id,
            dead_threads=self.dead_threads,
            heartbeats=self.heartbeats,
            links=lambda: [LinkCounters(poller.link.name, tuple(poller.devices),
                                        poller.store_failures)
                           for poller in list(self.pollers)],
            forwarder_stats=lambda: self.forwarder.health(),
            broker_address=self._broker_address,
            uplinks=lambda: list(self.uplinks.values()),
            outbox_path=lambda: str(self.outbox.path),
            outbox_writer_alive=lambda: self.outbox.writer_alive,
            outbox_depth=self.outbox.depth,
            outbox_set_aside=lambda: tuple(str(path) for path in list(self.outbox.set_aside)),
            alarms=self._alarms_seen,
        )

    def _alarms_seen(self) -> AlarmsSeen:
        """The active alarms for the health view (a reload may build the runtime:
        read it at each call)."""
        runtime = self.alarms
        if runtime is None:
            return no_alarms()
        return alarms_seen(runtime.engine.active(), runtime.tally.since, runtime.tally.counts())

    def _broker_address(self) -> tuple[str, int]:
        """(host, port) of the first uplink's first broker, as configured."""
        config = getattr(self.forwarder, "config", None)
        return (config.host, config.port) if config is not None else ("", 0)

    def heartbeats(self) -> list[Heartbeat]:
        """Every worker's heartbeat, for the service watchdog (watchdog.py), which finds
        the hung ones: alive, and past the progress they promised."""
        uplinks = list(self.uplinks.values())
        return [self.outbox.heartbeat,
                *(uplink.heartbeat for uplink in uplinks),
                *(beat for uplink in uplinks for beat in uplink.network_heartbeats()),
                *(poller.heartbeat for poller in self.pollers)]

    def stop_polling(self, timeout_s: float = POLLERS_STOP_S) -> None:
        """Stop acquisition only; the forwarder keeps draining the outbox. All pollers are
        told at once, then waited for together up to ``timeout_s``: a clean stop must
        leave the forwarder its grace and still fit the unit's stop timeout."""
        self._poll_stop.set()
        for poller in self.pollers:
            poller.stop(timeout_s=0)
        deadline = time.monotonic() + timeout_s
        for poller in self.pollers:
            if not poller.stop(timeout_s=max(0.0, deadline - time.monotonic())):
                log.error("poller of link %s did not stop within %.0f s; stopping without "
                          "it (its device was mid-poll; nothing it had stored is lost)",
                          poller.link.name, timeout_s)

    def reload(self, tick: Callable[[], object] | None = None) -> bool:
        """Re-read the station file and apply what changed; True if it was applied (or
        nothing changed). Refused, with every reason logged, when the file is invalid or
        a change needs a restart: then nothing changes."""
        source = self.config.source
        if source is None:
            log.warning("reload requested, but the configuration was not read from a file")
            return False
        try:
            new = self._load(source)
        except ConfigError as err:
            for issue in err.issues:
                log.error("reload: %s", issue)
            count = len(err.issues)
            log.error("reload of %s refused: %d problem%s found; still running on the "
                      "previous configuration", source, count, "s" * (count != 1))
            return False
        except Exception:  # a loader bug must not end a running agent
            log.exception("reload of %s failed; still running on the previous "
                          "configuration", source)
            return False
        from edge_agent.reload import plan_reload  # loaded by the first reload: issue 11, RSS

        plan = plan_reload(self.config, new)
        if plan.refused:
            for reason in plan.refused:
                log.error("reload: %s", reason)
            log.error("reload of %s refused; still running on the previous configuration",
                      source)
            return False
        if not plan.unchanged:
            self._apply(new, plan, tick)
        self.config = new
        log.info("reload of %s: %s", source, plan.summary())
        return True

    def _apply(self, new: StationConfig, plan: ReloadPlan,
               tick: Callable[[], object] | None = None) -> None:
        self.outbox.reconfigure(new.store.retention, new.store.synchronous)
        stopping = [p for p in self.pollers if p.link.name in plan.pollers_stopped]
        kept = [p for p in self.pollers if p.link.name not in plan.pollers_stopped]
        for poller in kept if plan.polling else ():
            poller.set_policy(new.polling)
        self._apply_uplinks(new, plan)
        self.pollers = kept  # out of the list before they stop: never seen as dead
        for poller in stopping:  # all told at once, then waited for
            poller.stop(timeout_s=0)
        stuck: set[str] = set()
        for poller in stopping:
            if not _wait_stopped(poller, tick):  # a second owner of the wire must not start
                log.error("poller of link %s did not stop for the reload within the time "
                          "its own polls may take; the agent stops so that the service "
                          "manager restarts it", poller.link.name)
                self._stuck.append(poller.thread.name)
                stuck.add(poller.link.name)
        if plan.alarms:  # the pollers of the devices concerned are stopped now
            self._apply_alarms(new)
        # built after the alarms: a new poller takes the engine and outputs as they are now
        started = {name: self._make_poller(new, name) for name in plan.pollers_started
                   if name not in stuck}
        self.pollers = kept + list(started.values())
        for poller in started.values():
            poller.start()

    def _apply_alarms(self, new: StationConfig) -> None:
        """Take up the new alarm settings (edge_agent/alarms/changes.py): alarms
        switched on build the runtime and restore it from the outbox; otherwise the
        runtime reconfigures, and the clears of alarms whose rule was removed are
        committed (a transaction of their own), then logged and sent to the outputs."""
        polled = list(new.devices_by_link())
        if self.alarms is None:
            if new.has_alarms():
                self.alarms = _alarm_runtime(new, polled)
                self.alarms.restore(self.outbox)
                self.alarms.start()
            return
        cleared = self.alarms.reconfigure(new, polled)
        if cleared:
            try:
                self.outbox.append_alarms(cleared)
            except OutboxError as err:  # kept in memory, stored with the next commit
                log.error("cannot store %d alarm clear(s) of the reload now (%s); they are "
                          "stored (then published) with the next write that succeeds",
                          len(cleared), err)
        self.alarms.engine.emit(cleared)

    def _apply_uplinks(self, new: StationConfig, plan: ReloadPlan) -> None:
        """Start, stop and reconfigure the uplinks the plan names; the others go on
        untouched. Stopped ones drain first; the outbox then forgets them (their claims,
        and rows only they were holding) and learns the new ones, in one transaction."""
        configs = {uplink.name: uplink for uplink in new.every_uplink()}
        _stop_all([self.uplinks[name] for name in plan.uplinks_stopped])
        if plan.routes or plan.uplinks_started or plan.uplinks_stopped:
            self.outbox.set_uplinks(_routes(new))
        for name in plan.uplinks_reconfigured:
            self.uplinks[name].reconfigure(new.station_id, configs[name])
        started = {name: make_uplink(new.station_id, configs[name], self.outbox)
                   for name in plan.uplinks_started}
        self.uplinks = {name: started.get(name) or self.uplinks[name] for name in configs}
        for uplink in started.values():
            uplink.start()

    def stop(self) -> None:
        """Clean stop: pollers, then every uplink's bounded drain (all at once), then the
        database."""
        self.health.stop()
        self.stop_polling()
        if self.alarms is not None:
            self.alarms.stop()
        _stop_all(list(self.uplinks.values()))
        self.outbox.close()
        log.info("edge-agent stopped")


def _alarm_runtime(config: StationConfig, polled_links: list[str]) -> AlarmRuntime:
    """The alarm engine, its output threads and tally for ``config``. Imported here, for a
    station that has alarms: without any, the engine, conditions and output code would
    stay in memory unused for the life of the process (issue 11, RSS at W1;
    docs/performance.md, Memory)."""
    from edge_agent.alarms.runtime import AlarmRuntime

    return AlarmRuntime(config, polled_links, open_link_client)


def _routes(config: StationConfig) -> dict[str, tuple[str, ...] | None]:
    """Which devices each uplink carries, for ``Outbox.set_uplinks``."""
    return {uplink.name: uplink.devices for uplink in config.every_uplink()}


def _stop_all(uplinks: list[Uplink]) -> None:
    """Stop ``uplinks`` together: each drains within its own grace, in parallel, so the
    stop takes the longest grace, not their sum."""
    stoppers = [threading.Thread(target=uplink.stop, name=f"stop-{uplink.name}")
                for uplink in uplinks]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join()


def _wait_stopped(poller: LinkPoller, tick: Callable[[], object] | None) -> bool:
    """Wait for a told-to-stop poller as long as its heartbeat says it is making progress
    (a slow device legitimately takes up to its own poll bound), calling ``tick`` between
    waits so the service manager keeps getting keep-alives. False: it is stuck."""
    while not poller.stop(timeout_s=_STOP_SLICE_S):
        if tick is not None:
            tick()
        if poller.heartbeat.stuck(time.monotonic()) is not None:
            return False
    return True


def run_until_signalled(agent: Agent, stop: threading.Event | SignalEvent,
                        reload: threading.Event | SignalEvent | None = None) -> int:
    """Run until ``stop`` is set (stopsignals.install_stop_signals), reloading the
    configuration whenever ``reload`` is set (stopsignals.install_reload_signal), then stop
    cleanly. Under systemd (``Type=notify``), report READY, watchdog keep-alives and
    STOPPING (watchdog.py)."""
    status = 0
    service = ServiceSupervisor.from_environment(agent)
    try:
        if not stop.is_set():
            agent.start()
            service.ready()
        while not stop.wait(service.tick_s):
            if reload is not None and reload.is_set():
                reload.clear()
                service.reloading()
                agent.reload(tick=service.tick)
                service.ready()
            dead = agent.dead_threads()
            if dead:
                log.critical("worker thread(s) %s ended unexpectedly; stopping so that the "
                             "service manager restarts the agent", ", ".join(dead))
                status = 1
                break
            service.tick()
    finally:
        service.stopping(stop_budget_s(*(
            settings for uplink in agent.config.every_uplink()
            for settings in (uplink.mqtt, uplink.hj212,
                             uplink.sparkplug.broker if uplink.sparkplug else None)
            if settings is not None)))
        agent.stop()
    return status
