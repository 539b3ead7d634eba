"""Which broker node the forwarder tries next, and how long it waits first (failover).

``mqtt.brokers`` lists the nodes of a cluster, or a primary and a standby. The rules,
written for the station engineer (docs/failover.md):

* The agent starts with the first address (and again after a restart or a reload).
* It stays on a node as long as that node works: it never drops a working session to
  go back to the first address.
* When a connect fails, or a session ends (broker stopped, connection lost, keepalive
  expired), it moves to the next address in the list, wrapping round: the node that just
  failed is tried again last.
* It does not wait between the nodes of one round; only after every node has failed in
  turn does it back off, with the ``reconnect_min_s``..``reconnect_max_s`` backoff
  growing by round. With one address this is the single-broker behaviour: a backoff
  after each failed connect, none after a long session ends.

Bookkeeping and its log lines (each move logged once, with its reason); the forwarder
does the connecting.
"""

from __future__ import annotations

import logging

from edge_agent.config.schema import BrokerAddress, MqttConfig
from edge_agent.forward.uplinklog import uplink_log
from edge_agent.retry import Backoff

log = logging.getLogger(__name__)


def uplink_rotation(config: MqttConfig, uplink: str) -> BrokerRotation:
    """A rotation over ``config``'s nodes with its backoff, starting at the first node,
    its moves logged under ``uplink``'s name: what the forwarder and the Sparkplug
    uplink both start with (start, reload), so their failover cannot differ."""
    return BrokerRotation(config.addresses,
                          Backoff(config.reconnect_min_s, config.reconnect_max_s),
                          uplink_log(log, uplink))


class BrokerRotation:
    """The list of broker nodes, the current one, and the failures since the last success.

    A "failure" is a failed connect or a session that ended sooner than a stable one
    (the broker accepted and then dropped us); a stable session that ends moves on to
    the next node without counting against the backoff.
    """

    def __init__(self, addresses: tuple[BrokerAddress, ...], backoff: Backoff,
                 logger: logging.Logger | logging.LoggerAdapter = log) -> None:
        """``logger``: where the moves are logged (forward/uplinklog.py names the uplink)."""
        if not addresses:
            raise ValueError("at least one broker address is needed")
        self.addresses = addresses
        self._backoff = backoff
        self._index = 0
        self.failures = 0  # consecutive, since the last stable session
        self._log = logger

    @property
    def current(self) -> BrokerAddress:
        """The node to connect to now."""
        return self.addresses[self._index]

    @property
    def position(self) -> int:
        """1-based place of ``current`` in the list (node 2 of 3)."""
        return self._index + 1

    @property
    def next(self) -> BrokerAddress:
        """The node that ``moved`` would go to."""
        return self.addresses[(self._index + 1) % len(self.addresses)]

    @property
    def round_failed(self) -> bool:
        """Every node has failed at least once since the last stable session."""
        return self.failures >= len(self.addresses)

    def moved(self, failed: bool) -> float:
        """The current node failed (``failed``: a failed connect or a short session) or
        its stable session ended; go to the next node. Returns the seconds to wait
        before trying it: 0 inside a round, the backoff of the round after a full one."""
        self.failures = self.failures + 1 if failed else 0
        self._index = (self._index + 1) % len(self.addresses)
        if self.failures == 0 or self.failures % len(self.addresses):
            return 0.0
        return self._backoff.delay_s(self.failures // len(self.addresses))

    # -- log lines (the forwarder calls these; docs/failover.md quotes them) ----------

    def log_leaving(self, reason: str) -> None:
        """The session on ``current`` ended: say why and where the agent goes next."""
        if len(self.addresses) > 1:
            self._log.warning("failover: leaving broker node %s (%s); connecting to %s next",
                              self.current, reason, self.next)

    def log_connect_failure(self, err: Exception) -> None:
        """The first round of failures after a working session at WARNING (each node
        once), later rounds at DEBUG: a broker down for days is not a log flood."""
        level = logging.DEBUG if self.round_failed else logging.WARNING
        if len(self.addresses) == 1:
            self._log.log(level, "broker unavailable (%s); samples stay in the outbox, retrying "
                          "with backoff", err)
            return
        self._log.log(level, "failover: broker node %s unavailable (%s); trying %s next",
                      self.current, err, self.next)
        if self.failures + 1 == len(self.addresses):  # this one completes a round
            self._log.warning("no broker node answers (%d tried); samples stay in the outbox, "
                              "retrying with backoff", len(self.addresses))

    def log_connected(self, previous: BrokerAddress | None) -> bool:
        """A session on ``current`` is up; True when it is a failover (``previous``,
        the node of the session before, was another one)."""
        total = len(self.addresses)
        where = f"{self.current}" + (f" (node {self.position} of {total})" if total > 1 else "")
        if previous is not None and previous != self.current:
            self._log.warning("failover: connected to broker %s, was on %s", where, previous)
            return True
        self._log.info("connected to broker %s%s", where, "" if previous is None else " again")
        return False
