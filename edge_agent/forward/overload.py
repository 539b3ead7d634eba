"""Past the limit: the live lane fell behind, and its late samples went to the backlog.

When samples arrive faster than the uplink delivers them, the live lane would grow into a
queue in front of every new sample, and live latency would grow without bound (issue 11
measured 5-18 s). Instead the outbox moves the live rows older than ``live_window_s`` to
the historical lane at each claim (store/claims.py): new samples stay live and fast, the
late ones are delivered later marked ``historical: true``, and nothing is lost.

This module only tells the operator: an overload episode is logged once at WARNING when
rows first move, and once at INFO when none has moved for one live window; the episode
state and the rows moved are shown in ``/metrics`` and ``status``.
"""

from __future__ import annotations

import logging

log = logging.getLogger("edge_agent.forward.forwarder")


class Overload:
    """Episode state of the live lane (forwarder thread writes, metrics read)."""

    def __init__(self, live_window_s: float,
                 logger: logging.Logger | logging.LoggerAdapter = log) -> None:
        """``logger``: names the uplink (forward/uplinklog.py)."""
        self._logger = logger
        #: The live window (s); a reload may change it.
        self.window_s = live_window_s
        self._last_move: float | None = None
        self._episode_moved = 0
        #: True while samples are falling behind the live window.
        self.active = False
        #: Samples moved from the live lane to the historical lane, this run.
        self.moved_total = 0
        #: Overload episodes begun, this run.
        self.episodes = 0

    def observe(self, moved: int, now: float) -> None:
        """Note one claim: ``moved`` live rows went to the backlog at monotonic ``now``."""
        if moved:
            self.moved_total += moved
            self._episode_moved += moved
            self._last_move = now
            if not self.active:
                self.active = True
                self.episodes += 1
                self._logger.warning("overload: samples arrive faster than the broker takes them; "
                                     "samples older than the live window (%g s) are sent later as "
                                     "historical, none is lost", self.window_s)
        elif self.active and self._last_move is not None \
                and now - self._last_move >= self.window_s:
            self._logger.info("overload over: the live lane keeps up again; %d samples were moved "
                              "to the historical lane in this episode", self._episode_moved)
            self.active = False
            self._episode_moved = 0
