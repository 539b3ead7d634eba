"""Poison messages: ones that can never be delivered, set aside so the rest can be.

The outbox re-sends an unacknowledged message first, with the same bytes, on every new
session (contract item 2). A message that can never be accepted would therefore block
every device behind it, for good. Two kinds are given up on:

* **Refused by the client** (forward/mqtt.py ``on_refused``): paho will not even send it
  (a topic over MQTT's 65,535 bytes, a wildcard or an unencodable character in it, a
  payload over MQTT's limit). It cannot succeed later: set aside at once.
* **Rejected by the broker** (an MQTT 5 PUBACK reason code of 0x80 or more: not
  authorized, topic name invalid, quota exceeded, payload format invalid, ...). It may
  be passing (a quota): the session ends and the message is re-sent with backoff, and it
  is set aside at its ``MAX_REJECTIONS``-th rejection. The count is kept in memory by
  message id, so a restart gives a message its tries afresh.

Setting aside keeps the contract's "no silent loss" (item 5): the message's rows leave
the outbox (store/unpublishable.py), its samples are announced as a gap event with the
reason ``unpublishable`` (device, time and sequence range, count), the messages and
samples are counted (``ForwarderStats``, /metrics, /status), and the first one of each
device is logged at ERROR (the rest at DEBUG: a device whose every message is refused
would otherwise log once per poll).
"""

from __future__ import annotations

import logging
from typing import Protocol

from edge_agent.store.outbox import OutboxError
from edge_agent.store.unpublishable import SetAside

log = logging.getLogger(__name__)

#: Broker rejections of one message before it is set aside.
MAX_REJECTIONS = 5


class PoisonCounts(Protocol):
    """Where the counters live (``ForwarderStats``)."""

    unpublishable_messages: int
    unpublishable_samples: int


class SetsAside(Protocol):
    """The outbox's side (``Outbox.set_aside_unpublishable``)."""

    def set_aside_unpublishable(self, msg_id: str) -> SetAside: ...


class Poison:
    """Decides when a message is given up on, and sets it aside. Forwarder thread only."""

    def __init__(self, outbox: SetsAside, counts: PoisonCounts,
                 logger: logging.Logger | logging.LoggerAdapter = log) -> None:
        """``logger``: names the uplink (forward/uplinklog.py)."""
        self._logger = logger
        self._outbox = outbox
        self._counts = counts
        self._rejections: dict[str, int] = {}
        self._logged: set[tuple[str, str]] = set()  # (device, kind) logged at ERROR

    def delivered(self, msg_id: str) -> None:
        """The broker acknowledged ``msg_id``: forget its rejections."""
        self._rejections.pop(msg_id, None)

    def rejected(self, msg_id: str, reason: str) -> bool:
        """The broker rejected ``msg_id``; True when it has now been set aside (the
        session may go on), False when it is to be retried (end the session, back off)."""
        count = self._rejections.get(msg_id, 0) + 1
        self._rejections[msg_id] = count
        if count < MAX_REJECTIONS:
            self._logger.warning("broker rejected message %s (%s), rejection %d of %d; ending the "
                                 "session to retry with backoff", msg_id, reason, count,
                                 MAX_REJECTIONS)
            return False
        return self.set_aside(msg_id, f"rejected by the broker {count} times ({reason})")

    def refused(self, msg_id: str, reason: str) -> bool:
        """The MQTT client refused ``msg_id`` before sending it: set it aside now."""
        return self.set_aside(msg_id, f"refused by the MQTT client: {reason}")

    def set_aside(self, msg_id: str, cause: str) -> bool:
        """Remove ``msg_id`` from the outbox and announce its samples; False when the
        outbox failed (it stays claimed and is offered again)."""
        try:
            result = self._outbox.set_aside_unpublishable(msg_id)
        except OutboxError as err:
            self._logger.error("cannot set aside unpublishable message %s (%s): %s; it is offered "
                               "again", msg_id, cause, err)
            return False
        self._rejections.pop(msg_id, None)
        if result.kind is None:  # acknowledged or set aside meanwhile
            return True
        self._counts.unpublishable_messages += 1
        self._counts.unpublishable_samples += result.samples
        self._log(msg_id, cause, result)
        return True

    def _log(self, msg_id: str, cause: str, result: SetAside) -> None:
        key = (result.device_id or "", result.kind or "")
        device = _short(result.device_id or "")
        if result.kind == "alarm":  # every one at ERROR: an alarm never goes unseen
            self._logger.error("alarm message %s of device %s can never be published (%s); "
                               "its alarm event(s) %s are %s and announced as a gap event "
                               "(reason unpublishable_alarm:<event id>)", msg_id, device,
                               cause, ", ".join(result.alarm_ids),
                               "removed from the outbox" if result.deleted is None
                               else "given up by this uplink")
            return
        level = logging.DEBUG if key in self._logged else logging.ERROR
        self._logged.add(key)
        if result.kind == "gap":
            self._logger.log(level, "gap event message %s of device %s can never be "
                             "published (%s); removed from the outbox, its announcement "
                             "is lost: %s", msg_id, device, cause,
                             "; ".join(result.gap_bodies))
            return
        later = "" if level == logging.DEBUG else \
            "; further messages of this device set aside are counted, not logged"
        where = "removed from the outbox" if result.deleted is None else \
            "given up by this uplink (uplinks that also carry them still deliver them)"
        self._logger.log(level, "message %s of device %s can never be published (%s); its "
                         "%d samples (seq %s-%s) are %s and announced as a gap event "
                         "(reason unpublishable)%s", msg_id, device, cause, result.samples,
                         result.first_seq, result.last_seq, where, later)


def _short(text: str, keep: int = 80) -> str:
    """An id as logged: one that broke MQTT may be 70,000 characters long."""
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text)} characters)"
