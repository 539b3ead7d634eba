"""What docs/payload.md promises a consumer about ``historical``, the status message's
``type`` and a silent uplink, shown with a real Mosquitto behind a relay that can go
silent (packets dropped, no FIN, no RST) and a real pymodbus device."""

from __future__ import annotations

import sqlite3
import time

from support.blackhole import BlackHoleProxy
from support.station import write_station
from support.waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.tools.sim.simserver import SimServer, SimUnit

KEEPALIVE_S = 5
LIVE_WINDOW_S = 0.5


def in_flight_messages(outbox_path) -> set[str]:
    """Message ids claimed and not acknowledged: published, waiting for PUBACK."""
    conn = sqlite3.connect(f"file:{outbox_path}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute(
            "SELECT msg_id FROM claims WHERE historical = 0")}
    finally:
        conn.close()


def test_a_message_in_flight_when_the_uplink_went_silent_is_resent_with_historical_false(
        tmp_path, broker, collector):
    """docs/payload.md: a message in flight when the link drops is re-sent byte for byte,
    so it keeps ``historical: false`` although it arrives long after the live window;
    the loss is noticed no sooner than one keepalive interval after the link went
    silent; every status message says ``"type": "status"``."""
    server = SimServer([SimUnit(1, holding={0: 11})]).start()
    proxy = BlackHoleProxy(broker.port).start()
    path = write_station(
        tmp_path / "station.yaml", broker_port=proxy.port,
        mqtt={"keepalive_s": KEEPALIVE_S, "live_window_s": LIVE_WINDOW_S},
        links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port}},
        devices=[{"id": "dev-1", "link": "gw", "unit_id": 1, "interval_s": 0.1,
                  "channels": [{"name": "v", "address": 0}]}])
    config = load_config(path)
    agent = Agent(config)
    agent.start()
    try:
        collector.wait_for(lambda c: len(c.seqs("dev-1")) >= 5, 30, "data before silence")
        proxy.freeze()
        silent_at = time.monotonic()
        wait_until(lambda: not agent.forwarder.stats.connected, 30,
                   "keepalive to notice the silent uplink")
        noticed_s = time.monotonic() - silent_at
        stranded = in_flight_messages(config.store.path)
        assert stranded, "messages were published into the silent link"
        proxy.thaw()
        collector.wait_for(lambda c: stranded <= {r.msg_id for r in c.samples}, 60,
                           "the stranded messages re-sent")
    finally:
        agent.stop()
        proxy.stop()
        server.stop()
    print(f"silent uplink noticed after {noticed_s:.1f} s (keepalive_s {KEEPALIVE_S})")
    assert noticed_s >= KEEPALIVE_S, "paho cannot give up before one keepalive interval"
    assert "keep alive timeout" in (agent.forwarder.stats.last_error or "").lower()
    resent = [r for r in collector.samples if r.msg_id in stranded]
    assert resent and not any(r.historical for r in resent), \
        "a re-sent message keeps the flag it was first sent with"
    # They were acquired before the silence, and the next session began at least one
    # keepalive interval (> the live window) later: claimed afresh, they would be
    # historical.
    assert KEEPALIVE_S > LIVE_WINDOW_S
    assert collector.status, "the status messages arrived"
    assert all(message.get("type") == "status" for message in collector.status)
