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
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.config.schema import Retention
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.outbox import Outbox, OutboxError
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


def test_rows_dropped_by_a_change_of_an_uplinks_devices_are_counted_in_the_log(
        tmp_path: Path, caplog):
    """city delivered dev-1's sample, which waited for province; a reload takes dev-1
    off province: the row leaves, and the log says how many and why."""
    box = Outbox(tmp_path / "outbox.sqlite3", UNLIMITED)
    try:
        box.set_uplinks({"city": None, "province": None})
        box.append(sample("dev-1", 1.0))
        box.append(sample("dev-2", 2.0))
        city = UplinkOutbox(box, "city")
        acked = [m.msg_id for m in city.claim_batch(0, 10, 10, 100_000).messages]
        assert city.ack_many(acked) == 0  # both wait for province
        caplog.set_level(logging.INFO)
        change = box.set_uplinks({"city": None, "province": ["dev-2"]})
        assert (change.rows_deleted, change.changed) == (1, ("province",))
        assert box.stats().samples == 1  # dev-2's, province still needs it
    finally:
        box.close()
    assert ("devices of uplink province changed: 1 row(s) left the outbox" in caplog.text), \
        caplog.text


def test_routes_switched_in_a_transaction_that_fails_are_put_back(tmp_path: Path):
    """set_uplinks switches the routes in the writer, before the commit; when the
    transaction then fails (here: the store_error gap row it writes for an earlier failed
    append is refused by a trigger), rows and claims stay the old routes' ones, and so
    must the routes: an acknowledgement under the new ones would delete a row the kept
    uplink still needs."""
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, UNLIMITED)
    try:
        box.set_uplinks({"city": None, "province": None})
        box.append(sample("dev-1", 1.0))
        with sqlite3.connect(path) as other:
            other.execute("CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN "
                          "SELECT RAISE(ABORT, 'injected failure'); END")
        with pytest.raises(OutboxError, match="injected failure"):
            box.append(sample("dev-1", 2.0))  # remembered, written with the next commit
        with pytest.raises(OutboxError, match="injected failure"):
            box.set_uplinks({"city": None})
        assert box.uplink_names == ("city", "province")
        with sqlite3.connect(path) as other:
            other.execute("DROP TRIGGER refuse")
        city = UplinkOutbox(box, "city")
        message = city.claim_batch(0, 10, 10, 100_000).messages[0]
        city.ack_many([message.msg_id])
        assert box.stats().samples == 1  # province has not delivered it yet
    finally:
        box.close()
