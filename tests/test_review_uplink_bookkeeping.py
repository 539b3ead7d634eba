"""Review findings on the uplinks' bookkeeping, against a real outbox file: the ids a
Sparkplug uplink sent and has not proven (``sent_once``) and the ids an HJ 212 uplink
failed to deliver (``_failed``) left their sets only when proven or taken, so the id of a
claim that went another way (its device no longer carried, its rows gone) stayed for the
life of the process. Both sets are now cut to the uplink's open claims when a session
ends; over many sessions they stay as small as the open claims."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_hj212_send import uplink_config

from edge_agent.config.schema import Retention
from edge_agent.forward.forwarder import ForwarderStats
from edge_agent.forward.hj212uplink import Hj212Uplink
from edge_agent.forward.sparkplugconn import Carried, forget_settled
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.outbox import Outbox
from edge_agent.store.uplinkview import UplinkOutbox
from edge_agent.watchdog import Heartbeat

UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 3, 15, 2, 0, tzinfo=UTC)
SESSIONS = 60


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    outbox = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    yield outbox
    outbox.close()


def append(box: Outbox, device: str, second: int) -> None:
    at = T0 + timedelta(seconds=second)
    box.append(Sample(device, at, (Reading(device, "c1", 1.0, "mg/m3", Quality.GOOD, at),)))


def test_sparkplug_sent_once_stays_bounded_when_claims_go_unproven(box):
    """Each session sends one sample and ends before its marker; then the station file
    moves the uplink to another device, so that claim goes unproven. Without the cut,
    ``sent_once`` held one id per session (60)."""
    view = UplinkOutbox(box, "sp")
    carried = Carried(view, logging.getLogger("test"), ForwarderStats(uplink="sp"),
                      Heartbeat("sparkplug-sp"), ending=lambda: False, deadline=lambda: 0.0)
    for session in range(SESSIONS):
        device = f"gas-{session % 2}"
        box.set_uplinks({"sp": [device]})
        append(box, device, session)
        claimed = view.claim_batch(0, 10, 1, 1 << 20)
        carried.sent_once.update(m.msg_id for m in claimed.messages)  # as _send does
        view.release_in_flight()  # the session ends (sparkpluguplink._one_session)
        forget_settled(carried)
        assert carried.sent_once <= view.open_claims()
    assert 0 < len(carried.sent_once) <= 1


def test_sparkplug_keeps_the_ids_still_claimed_so_they_go_again_as_historical(box):
    view = UplinkOutbox(box, "sp")
    box.set_uplinks({"sp": ["gas-0"]})
    carried = Carried(view, logging.getLogger("test"), ForwarderStats(uplink="sp"),
                      Heartbeat("sparkplug-sp"), ending=lambda: False, deadline=lambda: 0.0)
    for second in range(3):
        append(box, "gas-0", second)
    claimed = view.claim_batch(0, 10, 1, 1 << 20)
    carried.sent_once.update(m.msg_id for m in claimed.messages)
    view.release_in_flight()
    forget_settled(carried)
    assert carried.sent_once == {m.msg_id for m in claimed.messages}


def test_hj212_failed_ids_stay_bounded_over_many_sessions(tmp_path, box):
    """The uplink is built, not started (no platform needed: only its bookkeeping runs).
    Each session a send fails (the id is kept to mark the re-send RF=1), then the claim
    goes another way; the session's end cuts the set."""
    one = Hj212Uplink("ST01", uplink_config(tmp_path, 9), box, state_dir=tmp_path)
    for session in range(SESSIONS):
        device = "gc-1" if session % 2 else "gc-2"
        box.set_uplinks({"prov": [device]})
        append(box, device, session)
        claimed = one._outbox.claim_batch(0, 10, 1, 1 << 20)
        one._failed.update(m.msg_id for m in claimed.messages)  # as _send_realtime does
        one._outbox.forget_in_flight([m.msg_id for m in claimed.messages])
        one._forget_settled()
        assert one._failed <= one._outbox.open_claims()
    assert 0 < len(one._failed) <= 1
