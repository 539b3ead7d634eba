"""Where a claim starts looking (store/claims.py): each device's first unclaimed row of a
lane is read from the lane's rows above its frontier when they are few
(``_scan_heads``), else found by a seek per device of the outbox (``_device_head``). The
two must agree on every claim: this drives the same random history of appends, claims,
acknowledgements, re-offers, two uplinks (one carrying some devices only), messages set
aside (a gap row addressed to one uplink) and live rows falling behind the live window
through real outboxes, once per way of finding heads, and compares every message
claimed."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.config.schema import Retention
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store import claims
from edge_agent.store.outbox import Outbox
from edge_agent.store.uplinkview import UplinkOutbox

UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEVICES = "abcde"
UPLINKS = {"default": None, "city": ("b", "c")}


def sample(device: str, at: datetime) -> Sample:
    return Sample(device, at, (Reading(device, "ch", 1.0, "ppm", Quality.GOOD, at),))


def history(path: Path, seed: int) -> list[tuple]:
    """Every message claimed in one seeded history: (step, uplink, device, kind,
    historical, row ids)."""
    rng = random.Random(seed)
    box = Outbox(path, UNLIMITED)
    try:
        box.set_uplinks(dict(UPLINKS))
        views = {name: UplinkOutbox(box, name) for name in UPLINKS}
        for index in range(40):  # a backlog from before this session
            box.append(sample(rng.choice(DEVICES), T0 + timedelta(seconds=index)))
        now = T0 + timedelta(hours=1)
        boundary = {name: box.backlog_boundary(now.timestamp() - 30) for name in UPLINKS}
        in_flight: dict[str, list[str]] = {name: [] for name in UPLINKS}
        claimed: list[tuple] = []
        for step in range(120):
            now += timedelta(seconds=rng.choice((0.5, 1, 2, 40)))  # 40 s: behind the window
            for _ in range(rng.randrange(0, 7)):
                box.append(sample(rng.choice(DEVICES), now - timedelta(seconds=rng.random())))
            name = rng.choice(sorted(UPLINKS))
            view, flying = views[name], in_flight[name]
            acked = [flying.pop(rng.randrange(len(flying)))
                     for _ in range(min(len(flying), rng.randrange(0, 4)))]
            if flying and rng.random() < 0.1:  # not handed over after all: offered again
                view.forget_in_flight([flying.pop()])
            if flying and rng.random() < 0.08:  # given up: a gap row for this uplink alone
                view.set_aside_unpublishable(flying.pop(rng.randrange(len(flying))))
            got = view.claim_batch(boundary[name], rng.randrange(1, 8), rng.choice((1, 3, 50)),
                                   10_000, live_cutoff=now.timestamp() - 30, acked=acked)
            boundary[name] = got.boundary
            for message in got.messages:
                if message.msg_id not in flying:
                    flying.append(message.msg_id)
                claimed.append((step, name, message.device_id, message.kind,
                                message.historical, [e.row_id for e in message.entries]))
        return claimed
    finally:
        box.close()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_scanned_heads_claim_what_per_device_seeks_claim(tmp_path, monkeypatch, seed):
    scanned = history(tmp_path / "scanned.sqlite3", seed)
    monkeypatch.setattr(claims, "_HEAD_SCAN", 0)  # every lane too long to read: seeks
    sought = history(tmp_path / "sought.sqlite3", seed)
    monkeypatch.setattr(claims, "_HEAD_SCAN", 4)  # some lanes read, some sought
    mixed = history(tmp_path / "mixed.sqlite3", seed)
    assert len(scanned) > 100 and any(m[4] for m in scanned) and any(not m[4] for m in scanned)
    assert {m[1] for m in scanned} == set(UPLINKS)
    assert any(m[3] == "gap" for m in scanned), "no row addressed to one uplink was claimed"
    assert scanned == sought
    assert mixed == sought
