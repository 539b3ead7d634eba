"""A history pull whose stored record is longer than one packet may carry: a real session
(hj212/session.py) answers the platform simulator's 2051 pull with 9011, the record split
into PNUM/PNO pieces that the platform puts back together byte for byte, and 9012
``ExeRtn=1``. The records come from a real outbox's statistics (hj212/statsstore.py)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.localzone import china_local_time
from support.waiting import wait_until

from edge_agent.config.schema import Retention
from edge_agent.forward.hj212stats import StatsKeeper
from edge_agent.hj212.packet import Version
from edge_agent.hj212.platform_state import PlatformStateFile
from edge_agent.hj212.realtime import DeviceMap
from edge_agent.hj212.responder import Responder
from edge_agent.hj212.session import Session
from edge_agent.hj212.session_types import SessionSettings
from edge_agent.hj212.statsstore import Plan
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.outbox import Outbox
from edge_agent.tools.hj212platform.log import PlatformLog
from edge_agent.tools.hj212platform.requests import Command
from edge_agent.tools.hj212platform.server import Behaviour, Platform

pytestmark = pytest.mark.real_parts

MN = "010000A8900016F000169DC0"
T0 = datetime(2026, 3, 15, 2, 0, tzinfo=UTC)  # 10:00 in the station's zone
CHANNELS = tuple((f"c{i}", f"x9{i:04d}", "", 3) for i in range(40))  # 40 codes: > 1024 chars
PLAN = Plan("prov", {"gc-1": DeviceMap(CHANNELS)}, ("2051",), 1)


@pytest.fixture(autouse=True)
def station_zone(monkeypatch) -> Iterator[None]:
    """The agent runs in China's local time; HJ 212 periods are local."""
    yield from china_local_time(monkeypatch)


def test_a_pulled_record_longer_than_a_packet_is_split_and_reassembled(tmp_path: Path):
    box = Outbox(tmp_path / "outbox.sqlite3", Retention(None, None, None))
    box.append(Sample("gc-1", T0 + timedelta(seconds=5), tuple(
        Reading("gc-1", name, 1000.123 + i, "", Quality.GOOD, T0)
        for i, (name, *_) in enumerate(CHANNELS))))
    keeper = StatsKeeper(box, "prov", lambda: PLAN, clock=lambda: T0.timestamp() + 200)
    assert keeper.step() == [("2051", "20260315100000")]
    (record,) = keeper.history("2051", datetime(2026, 3, 15, 10), datetime(2026, 3, 15, 11))
    assert len(record) > 1024

    jsonl = tmp_path / "platform.jsonl"
    log = PlatformLog(io.StringIO(), jsonl)
    platform = Platform("127.0.0.1", 0, Behaviour(), log)
    threading.Thread(target=platform.server.serve_forever, daemon=True).start()
    responder = Responder("123456", PlatformStateFile(tmp_path / "s.json"), keeper.history,
                          started_at=datetime(2026, 3, 15, 10))
    session = Session(SessionSettings("127.0.0.1", platform.port, "22", "123456", MN,
                                      Version.HJ212_2025, timeout_s=2, retries=1),
                      responder).start()

    def events(kind: str) -> list[dict]:
        lines = jsonl.read_text(encoding="utf-8").splitlines() if jsonl.exists() else []
        return [e for line in lines if line.endswith("}")
                and (e := json.loads(line))["event"] == kind]

    try:
        wait_until(lambda: any(e["cn"] == "2081" for e in events("packet")), 30,
                   "the station's 2081 after connecting")
        assert platform.send_to_all(Command(
            "2051", "BeginTime=20260315100000,EndTime=20260315110000")) == 1
        wait_until(lambda: any(e["cn"] == "9012" for e in events("packet")), 30,
                   "the end of the pull")
    finally:
        session.stop()
        platform.server.shutdown()
        platform.server.server_close()
        log.close()
        box.close()
    packets = [(e["cn"], e["cp"]) for e in events("packet") if e["cn"] != "2081"]
    pieces = [cp for cn, cp in packets if cn == "2051"]
    assert packets[0] == ("9011", "QnRtn=1") and packets[-1] == ("9012", "ExeRtn=1")
    assert len(pieces) >= 2 and all(cp.startswith("DataTime=20260315100000;") for cp in pieces)
    (whole,) = [e["cp"] for e in events("reassembled")]
    assert whole == record
