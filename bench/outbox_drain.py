"""How fast the agent drains a backlog from its outbox, against a bare sqlite3 + paho drain.

Run: ``.venv/bin/python bench/outbox_drain.py [--shape both|wide|narrow] [--scale 1.0]
[--rounds 3]``. Prints medians and ratios measured in this run only (bare and agent take
turns going first); nothing here asserts a time.

Two backlog shapes (issue 11): ``wide`` is 40 000 samples of 25 readings (1 M readings),
``narrow`` is 1 000 000 samples of one reading; ``--scale`` shrinks both for a quick run.
The samples belong to 20 devices in turn and were acquired an hour ago, so they are the
historical lane. Each run fills a fresh file with the same stored bodies (plain SQL, in
the outbox's own row format, because appending a million samples one commit at a time
would measure the fill, not the drain), then:

* bare: one sqlite3 connection (WAL, synchronous=FULL) and paho QoS 1 with the same
  in-flight window (20) and message size (50 samples of one device); acknowledged rows are
  deleted by id range, all acks that arrived meanwhile in one transaction;
* agent: the real Outbox and Forwarder (``max_inflight`` 20, ``max_samples_per_message``
  50) until the outbox is empty. Meanwhile a live device appends one sample every 100 ms
  through ``Outbox.append``, and a subscriber measures each live sample's latency from
  the call to its arrival at the broker's subscriber (the live lane during a drain).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config.schema import MqttConfig, Retention
from edge_agent.forward.forwarder import Forwarder
from edge_agent.model import Quality, Reading, Sample, utc_now
from edge_agent.payload import encode_sample_body
from edge_agent.store.outbox import Outbox

DEVICES = 20
WINDOW = 20
PER_MESSAGE = 50
UNLIMITED = Retention(max_rows=None, max_bytes=None, max_age_s=None)
SHAPES = {"wide": (40_000, 25), "narrow": (1_000_000, 1)}


def _bodies(samples: int, readings: int) -> list[tuple[str, int, str, float, str]]:
    """(device, seq, sample id, acquired_at, body) of the backlog, devices in turn."""
    acquired = utc_now().timestamp() - 3600
    template = Sample("dev-00", utc_now(), tuple(
        Reading("dev-00", f"c{n:02d}", 1.25 + n, "ppm", Quality.GOOD, utc_now())
        for n in range(readings)))
    rows = []
    for index in range(samples):
        device, seq = f"dev-{index % DEVICES:02d}", index // DEVICES + 1
        sample_id = f"{index:032x}"
        rows.append((device, seq, sample_id, acquired + index * 1e-3,
                     encode_sample_body(template, seq, sample_id)))
    return rows


def _fill_outbox(path: Path, rows: list) -> None:
    Outbox(path, Retention()).close()  # the schema, as the agent makes it
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO outbox (kind, device_id, seq, entry_id, acquired_at, body) "
                     "VALUES ('sample', ?, ?, ?, ?, ?)", rows)
    conn.executemany("INSERT OR REPLACE INTO device_seq (device_id, last_seq) VALUES (?, ?)",
                     [(f"dev-{d:02d}", len(rows)) for d in range(DEVICES)])
    conn.execute("COMMIT")
    conn.close()


def bare_drain(port: int, path: Path, rows: list) -> float:
    """Seconds for sqlite3 + paho alone to publish and delete every row."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, device TEXT, body TEXT)")
    conn.execute("CREATE INDEX q_device ON q (device, id)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO q (device, body) VALUES (?, ?)", [(r[0], r[4]) for r in rows])
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # like the agent's file: filled, closed
    acks: list[int] = []  # message ids acknowledged, handled by the main thread
    ready = threading.Condition()
    pending: dict[int, tuple[str, int, int, int]] = {}

    def on_publish(client, userdata, mid, reason_code, properties) -> None:
        with ready:  # never held around publish(): paho calls this under its own lock
            acks.append(mid)
            ready.notify()

    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bare")
    client.max_inflight_messages_set(WINDOW)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    started = time.perf_counter()  # like the agent's: from before the connection
    client.connect("127.0.0.1", port)
    client.loop_start()
    cursors = {f"dev-{d:02d}": 0 for d in range(DEVICES)}
    in_flight, remaining = 0, len(rows)
    while remaining:
        with ready:
            while in_flight >= WINDOW or (not cursors and not acks):
                if acks:
                    break
                ready.wait()
            done, acks[:] = [pending.pop(mid) for mid in acks], []
        if done:
            conn.execute("BEGIN IMMEDIATE")
            for device, first, last, _ in done:
                conn.execute("DELETE FROM q WHERE device = ? AND id BETWEEN ? AND ?",
                             [device, first, last])
            conn.execute("COMMIT")
            in_flight -= len(done)
            remaining -= sum(count for *_, count in done)
        for device in list(cursors):
            if in_flight >= WINDOW:
                break
            batch = conn.execute("SELECT id, body FROM q WHERE device = ? AND id > ? ORDER BY id "
                                 "LIMIT ?", [device, cursors[device], PER_MESSAGE]).fetchall()
            if not batch:
                del cursors[device]
                continue
            cursors[device] = batch[-1][0]
            payload = ('{"v":1,"samples":[' + ",".join(b for _, b in batch) + "]}").encode()
            info = client.publish(f"bench/{device}", payload, qos=1)
            pending[info.mid] = (device, batch[0][0], batch[-1][0], len(batch))
            in_flight += 1
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    conn.close()
    return elapsed


class LiveProbe:
    """Appends a live sample every 100 ms and times its arrival at a subscriber."""

    def __init__(self, port: int, outbox: Outbox) -> None:
        self._outbox = outbox
        self._sent: dict[str, float] = {}
        self.latencies_ms: list[float] = []
        self._stop = threading.Event()
        self._sub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                client_id="probe")
        self._sub.on_message = self._on_message
        subscribed = threading.Event()
        self._sub.on_subscribe = lambda *args: subscribed.set()
        self._sub.connect("127.0.0.1", port)
        self._sub.loop_start()
        self._sub.subscribe("edge/bench/live/data", qos=1)
        subscribed.wait(10)
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def waiting(self) -> dict[str, float]:
        """Live samples appended and not yet received."""
        return self._sent

    def _on_message(self, client, userdata, message) -> None:
        arrived = time.perf_counter()
        for sample in json.loads(message.payload)["samples"]:
            sent = self._sent.pop(sample["id"], None)
            if sent is not None:
                self.latencies_ms.append((arrived - sent) * 1000)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            now = utc_now()
            sample = Sample("live", now, (Reading("live", "c", 1.0, "ppm", Quality.GOOD, now),))
            started = time.perf_counter()
            accepted = self._outbox.append(sample)
            self._sent[accepted.sample_id] = started

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sub.disconnect()
        self._sub.loop_stop()


def agent_drain(port: int, path: Path, rows: list) -> tuple[float, list[float]]:
    """Seconds for the agent to drain the backlog, and live-lane latencies (ms) meanwhile."""
    _fill_outbox(path, rows)
    outbox = Outbox(path, UNLIMITED)  # the default max_rows (1 M) would drop samples
    config = MqttConfig("127.0.0.1", port, client_id="bench-agent", max_inflight=WINDOW,
                        max_samples_per_message=PER_MESSAGE)
    forwarder = Forwarder("bench", config, outbox)
    outbox.on_append = forwarder.wake
    probe = LiveProbe(port, outbox)
    started = time.perf_counter()
    forwarder.start()
    probe.start()
    while outbox.depth().samples > len(probe.waiting) + 1:  # the backlog is gone
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    probe.stop()
    forwarder.stop(grace_s=2)
    outbox.close()
    return elapsed, probe.latencies_ms


def one_round(rows: list, bare_first: bool) -> tuple[float, float, list[float]]:
    """Bare and agent drains of ``rows`` on one fresh broker: seconds each, live latencies."""
    from edge_agent.tools.sim.broker import Mosquitto
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        if bare_first:
            bare_s = bare_drain(broker.port, Path(tmp) / "bare.db", rows)
        agent_s, latencies = agent_drain(broker.port, Path(tmp) / "outbox.db", rows)
        if not bare_first:
            bare_s = bare_drain(broker.port, Path(tmp) / "bare.db", rows)
    return bare_s, agent_s, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("both", *SHAPES), default="both")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per shape, bare and agent in turn first; medians printed")
    args = parser.parse_args()
    shapes = SHAPES if args.shape == "both" else {args.shape: SHAPES[args.shape]}
    for name, (samples, readings) in shapes.items():
        samples = max(DEVICES * PER_MESSAGE, int(samples * args.scale))
        rows = _bodies(samples, readings)
        bare_runs, agent_runs, live = [], [], []
        for round_no in range(args.rounds):
            bare_s, agent_s, latencies = one_round(rows, bare_first=round_no % 2 == 0)
            bare_runs.append(bare_s)
            agent_runs.append(agent_s)
            live.extend(latencies)
        bare_s, agent_s = statistics.median(bare_runs), statistics.median(agent_runs)
        ratios = sorted(b / a for b, a in zip(bare_runs, agent_runs, strict=True))
        live_text = (f"live lane median {statistics.median(live):.1f} ms, max {max(live):.0f} ms "
                     f"({len(live)} samples)") if live else "no live samples arrived"
        print(f"{name}: {samples} samples x {readings} readings, {args.rounds} rounds | "
              f"bare {bare_s:6.2f} s ({samples / bare_s:7.0f} samples/s) | agent "
              f"{agent_s:6.2f} s ({samples / agent_s:7.0f} samples/s) | agent = "
              f"{bare_s / agent_s:4.2f} x bare (per round {ratios[0]:.2f}..{ratios[-1]:.2f}) | "
              f"{live_text}", flush=True)


if __name__ == "__main__":
    main()
