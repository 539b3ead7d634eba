"""The outbox changing its set of uplinks (issue 12), on a real SQLite outbox.

* At start: until ``set_uplinks`` is first called the outbox serves a placeholder uplink
  ``default``; a station file without ``mqtt:`` never had that uplink, so its start must
  not announce it removed. One that really held rows in the file is still announced.
* On a reload: an acknowledgement that the writer runs right after the change must
  apply the new routes (it used the old ones, and a row the remaining uplink had
  delivered stayed in the outbox for good, waiting for the removed one).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.config.schema import Retention
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.outbox import Outbox
from edge_agent.store.uplinkview import UplinkOutbox

UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def sample(device: str, value: float) -> Sample:
    return Sample(device, T0, (Reading(device, "ch", value, "ppm", Quality.GOOD, T0),))


def test_start_without_a_default_uplink_does_not_announce_it_removed(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO)
    box = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    try:
        box.append(sample("dev-1", 1.0))
        box.set_uplinks({"city": None, "province": ["dev-1"]})
        assert box.stats().rows == 1  # the sample waits for city and province
    finally:
        box.close()
    assert "removed" not in caplog.text, caplog.text


def test_start_without_an_uplink_that_held_claims_in_the_file_announces_it_removed(
        tmp_path: Path, caplog):
    """The file was served by ``default`` and ``city``; ``default`` acknowledged the
    sample, which waited for ``city``. Started again with only ``city``: ``default``'s
    claims go, and the log says so."""
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, UNLIMITED)
    try:
        box.set_uplinks({"default": None, "city": None})
        box.append(sample("dev-1", 1.0))
        view = UplinkOutbox(box, "default")
        message = view.claim_batch(0, 10, 10, 100_000).messages[0]
        assert view.ack_many([message.msg_id]) == 0  # city still needs it
    finally:
        box.close()
    caplog.set_level(logging.INFO)
    box = Outbox(path, UNLIMITED)
    try:
        change = box.set_uplinks({"city": None})
        assert change.removed == {"default": (1, 0)}
        assert box.stats().rows == 1  # city has not delivered it yet
    finally:
        box.close()
    assert "uplink default removed: its 1 claim(s) released" in caplog.text


def test_an_ack_written_right_after_an_uplink_is_removed_deletes_what_nobody_else_needs(
        tmp_path: Path):
    """``city`` acknowledges its message while ``default`` is being removed: the writer
    runs the removal, then the acknowledgement, before ``set_uplinks`` has returned to
    its caller. That is forced here (the acknowledgement is written between the two),
    as it happens now and then in a running agent."""
    box = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    try:
        box.set_uplinks({"default": None, "city": None})
        box.append(sample("dev-1", 1.0))
        city = UplinkOutbox(box, "city")
        message = city.claim_batch(0, 10, 10, 100_000).messages[0]
        submit = box._submit
        acked: list[int] = []

        def removal_then_ack(run, reads_only=False):
            result = submit(run, reads_only)
            box._submit = submit  # the removal's transaction has committed; the ack next
            acked.append(city.ack_many([message.msg_id]))
            return result

        box._submit = removal_then_ack
        box.set_uplinks({"city": None})
        assert acked == [1], "city's ack kept the row for the removed default uplink"
        assert box.stats().rows == 0
    finally:
        box.close()
