"""Wires a validated station config into running parts: outbox, pollers, forwarder.

Start order: outbox first (so the first poll can commit whether or not a broker was
ever reached), then the forwarder, then one poller per link. Stop order is the reverse:
pollers stop, the forwarder gets ``mqtt.shutdown_grace_s`` for in-flight messages to be
acknowledged and publishes the offline status, then the database is closed.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections import defaultdict
from types import FrameType

from edge_agent.config.schema import Device, StationConfig
from edge_agent.driver import load_driver
from edge_agent.forward.forwarder import Forwarder
from edge_agent.poller import LinkPoller
from edge_agent.store.outbox import Outbox

log = logging.getLogger(__name__)


class Agent:
    """The running agent for one station."""

    def __init__(self, config: StationConfig) -> None:
        self.config = config
        self._poll_stop = threading.Event()
        self.outbox = Outbox(config.store.path, config.store.retention,
                             config.store.synchronous)
        self.forwarder = Forwarder(config.station_id, config.mqtt, self.outbox)
        self.outbox.on_append = self.forwarder.wake
        self.pollers = self._make_pollers()

    def _make_pollers(self) -> list[LinkPoller]:
        by_link: dict[str, list[Device]] = defaultdict(list)
        for device in self.config.devices:
            by_link[device.link].append(device)
        return [
            LinkPoller(self.config.links[name], [load_driver(d) for d in devices],
                       self.outbox, self.config.polling, self._poll_stop)
            for name, devices in by_link.items()
        ]

    def start(self) -> None:
        self.forwarder.start()
        for poller in self.pollers:
            poller.start()
        log.info("edge-agent running for station %s: %d devices on %d links, outbox %s",
                 self.config.station_id, len(self.config.devices), len(self.pollers),
                 self.config.store.path)

    def dead_threads(self) -> list[str]:
        """Names of started worker threads that have ended although nothing stopped them.
        Each survives errors by design; a dead one is a bug, and a restart is the cure."""
        if self._poll_stop.is_set():
            return []
        threads = [self.forwarder.thread, *(poller.thread for poller in self.pollers)]
        return [t.name for t in threads if t.ident is not None and not t.is_alive()]

    def stop_polling(self) -> None:
        """Stop acquisition only; the forwarder keeps draining the outbox."""
        self._poll_stop.set()
        for poller in self.pollers:
            if poller.thread.ident is not None:
                poller.thread.join(timeout=30)

    def stop(self) -> None:
        """Clean stop: pollers, then the forwarder's bounded drain, then the database."""
        self.stop_polling()
        self.forwarder.stop()
        self.outbox.close()
        log.info("edge-agent stopped")


def install_stop_signals() -> threading.Event:
    """SIGTERM/SIGINT set the returned event. Install before slow start-up work, so a stop
    requested while the agent is still starting is honoured cleanly too."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    return stop


def run_until_signalled(agent: Agent, stop: threading.Event) -> int:
    """Run until ``stop`` is set (see install_stop_signals), then stop cleanly."""
    status = 0
    try:
        if not stop.is_set():
            agent.start()
        while not stop.wait(1.0):
            dead = agent.dead_threads()
            if dead:
                log.critical("worker thread(s) %s ended unexpectedly; stopping so that the "
                             "service manager restarts the agent", ", ".join(dead))
                status = 1
                break
    finally:
        agent.stop()
    return status
