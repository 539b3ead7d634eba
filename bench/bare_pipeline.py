"""The bare pipeline of issue 11: the same work as the agent with nothing else.

pymodbus poll -> sqlite3 insert + commit (WAL, synchronous=FULL) -> paho QoS 1 publish ->
delete on PUBACK. It polls the devices of a ``bench.spec.Spec`` (same simulators, tags,
interval, broker, in-flight window and batching as the agent), encodes the agent's
payload v1 shape (same fields, so the same bytes per reading) and keeps the same
``outbox``/``device_seq`` tables the bench counts from. Nothing more: no retries, no
quality rules, no reconnect bookkeeping, no live lane (one FIFO by row id).

Run: ``python -m bench.bare_pipeline SPEC.json`` (the runner does); SIGTERM stops it,
giving in-flight messages 5 s to be acknowledged. ``--prefill N --readings R``
instead writes a backlog of N samples of R readings into SPEC's database and exits.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sqlite3
import struct
import sys
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from bench.spec import LIVE_WINDOW_S, STATION, UNIT, Spec, device_id, tag_name

# AUTOINCREMENT: the publisher reads rows above the last id it took, so an id must never
# be reused after the table was emptied by acknowledgements (plain rowids are).
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
    "device_id TEXT NOT NULL, seq INTEGER NOT NULL, entry_id TEXT NOT NULL, "
    "acquired_at REAL NOT NULL, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS device_seq (device_id TEXT PRIMARY KEY, last_seq INTEGER)",
)
GRACE_S = 5.0


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def body(seq: int, sample_id: str, acquired_at: float, values: dict[str, float]) -> str:
    """The agent's stored sample body, field for field (edge_agent/payload.py)."""
    return json.dumps({
        "id": sample_id, "seq": seq, "acquired_at": iso(acquired_at), "instrument_time": None,
        "values": {name: {"value": value, "unit": UNIT, "quality": "GOOD", "reason": None}
                   for name, value in values.items()},
    }, separators=(",", ":"))


def name_os_thread(name: str) -> None:
    """Show the thread's name in /proc (``comm``), as the agent's threads do, so that
    per-thread figures (bench/threads.py) can tell bare's threads apart. Once per thread."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        pass


def open_db(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    for statement in SCHEMA:
        conn.execute(statement)
    return conn


class Writer(threading.Thread):
    """The one writing connection: every queued insert and ack delete, one commit per turn."""

    def __init__(self, spec: Spec, committed: threading.Condition) -> None:
        super().__init__(name="writer", daemon=True)
        self.conn = open_db(spec.db, spec.synchronous)
        self.seqs = dict(self.conn.execute("SELECT device_id, last_seq FROM device_seq"))
        self.queue: queue.Queue[tuple] = queue.Queue()
        self.committed = committed

    def run(self) -> None:
        name_os_thread("writer")
        while True:
            items = [self.queue.get()]
            while len(items) < 5000:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(item[0] == "stop" for item in items)
            self.conn.execute("BEGIN")
            for item in items:
                if item[0] == "sample":
                    _, device, acquired_at, values = item
                    seq = self.seqs.get(device, 0) + 1
                    self.seqs[device] = seq
                    sample_id = uuid.uuid4().hex
                    self.conn.execute(
                        "INSERT INTO device_seq VALUES (?, ?) ON CONFLICT (device_id) "
                        "DO UPDATE SET last_seq = excluded.last_seq", (device, seq))
                    self.conn.execute(
                        "INSERT INTO outbox (kind, device_id, seq, entry_id, acquired_at, body)"
                        " VALUES ('sample', ?, ?, ?, ?, ?)",
                        (device, seq, sample_id, acquired_at,
                         body(seq, sample_id, acquired_at, values)))
                elif item[0] == "ack":
                    self.conn.executemany("DELETE FROM outbox WHERE id = ?",
                                          [(row_id,) for row_id in item[1]])
            self.conn.execute("COMMIT")
            with self.committed:
                self.committed.notify_all()
            if stopping:
                self.conn.close()
                return


class Publisher(threading.Thread):
    """Reads committed rows in id order, publishes QoS 1, hands acknowledged ids back."""

    def __init__(self, spec: Spec, writer: Writer, committed: threading.Condition,
                 started_at: float) -> None:
        super().__init__(name="publisher", daemon=True)
        self.spec, self.writer, self.committed = spec, writer, committed
        self.reader = sqlite3.connect(spec.db, isolation_level=None, check_same_thread=False)
        self.live_after = started_at - LIVE_WINDOW_S
        self.cursor = 0
        self.buffer: deque[tuple] = deque()
        self.in_flight: dict[int, list[int]] = {}
        self.acked: deque[int] = deque()
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id="bench-bare")
        self.client.max_inflight_messages_set(spec.max_inflight)
        self.client.reconnect_delay_set(0.2, 0.5)
        self.client.on_connect = lambda *args: self.connected.set()
        self.client.on_disconnect = lambda *args: self.connected.clear()
        self.client.on_publish = self._on_publish

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.acked.append(mid)
        with self.committed:
            self.committed.notify_all()

    def _next_message(self) -> tuple[str, bytes, list[int]] | None:
        if not self.buffer:
            rows = self.reader.execute(
                "SELECT id, device_id, acquired_at, body FROM outbox WHERE id > ? "
                "ORDER BY id LIMIT 5000", (self.cursor,)).fetchall()
            if not rows:
                return None
            self.cursor = rows[-1][0]
            self.buffer.extend(rows)
        first = self.buffer.popleft()
        rows = [first]
        historical = first[2] < self.live_after
        while (self.buffer and len(rows) < self.spec.max_samples_per_message
               and self.buffer[0][1] == first[1]
               and (self.buffer[0][2] < self.live_after) == historical):
            rows.append(self.buffer.popleft())
        head = json.dumps({"v": 1, "type": "data", "id": uuid.uuid4().hex, "station": STATION,
                           "device": first[1], "historical": historical},
                          separators=(",", ":"))
        payload = f'{head[:-1]},"samples":[{",".join(row[3] for row in rows)}]}}'.encode()
        return f"edge/{STATION}/{first[1]}/data", payload, [row[0] for row in rows]

    def run(self) -> None:
        name_os_thread("publisher")
        self.client.connect_async("127.0.0.1", self.spec.broker_port, keepalive=30)
        self.client.loop_start()
        while True:
            while self.acked:
                ids = self.in_flight.pop(self.acked.popleft(), None)
                if ids:
                    self.writer.queue.put(("ack", ids))
            if self.stopping.is_set() and not self.in_flight:
                break
            while (self.connected.is_set() and not self.stopping.is_set()
                   and len(self.in_flight) < self.spec.max_inflight):
                message = self._next_message()
                if message is None:
                    break
                topic, payload, ids = message
                self.in_flight[self.client.publish(topic, payload, qos=1).mid] = ids
            with self.committed:
                if not self.acked:
                    self.committed.wait(0.05)
        self.client.disconnect()
        self.client.loop_stop()


def poll_link(spec: Spec, index: int, writer: Writer, stop: threading.Event) -> None:
    """One thread per link, polling its devices in turn, as the agent does."""
    name_os_thread(f"poll-{index}")
    link = spec.links[index]
    client = ModbusTcpClient("127.0.0.1", port=link.port, retries=0, timeout=1)
    client.connect()
    names = [tag_name(i) for i in range(spec.tags)]
    devices = [(device_id(index, unit), unit) for unit in link.units]
    due = time.monotonic()
    while not stop.is_set():
        for device, unit in devices:
            acquired_at = time.time()
            try:
                words = client.read_input_registers(0, count=2 * spec.tags,
                                                    device_id=unit).registers
            except ModbusException:
                continue  # bare: no retry, no BAD reading; the next poll tries again
            values = struct.unpack(f">{spec.tags}f", struct.pack(f">{len(words)}H", *words))
            writer.queue.put(("sample", device, acquired_at, dict(zip(names, values, strict=True))))
        due += spec.interval_s
        late = time.monotonic() - due
        if late > spec.interval_s:
            due = time.monotonic()  # behind: skip the missed polls, as a poller must
        elif late < 0:
            stop.wait(-late)
    client.close()


def prefill(spec: Spec, samples: int, readings: int, device: str, acquired_at: float) -> None:
    """Write a backlog straight into the bare outbox (synchronous OFF: setup, not measured)."""
    conn = open_db(spec.db, "OFF")
    values = {tag_name(i): 1.0 + i * 0.25 for i in range(readings)}
    conn.execute("BEGIN")
    for first in range(1, samples + 1, 50_000):  # in chunks: 1 M rows at once is ~0.5 GB
        rows = []
        for seq in range(first, min(first + 50_000, samples + 1)):
            sample_id = uuid.uuid4().hex
            rows.append(("sample", device, seq, sample_id, acquired_at,
                         body(seq, sample_id, acquired_at, values)))
        conn.executemany("INSERT INTO outbox (kind, device_id, seq, entry_id, acquired_at, "
                         "body) VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.execute("INSERT INTO device_seq VALUES (?, ?)", (device, samples))
    conn.execute("COMMIT")
    conn.close()


def run(spec: Spec) -> None:
    committed = threading.Condition()
    writer = Writer(spec, committed)
    publisher = Publisher(spec, writer, committed, time.time())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *args: stop.set())
    writer.start()
    publisher.start()
    pollers = [threading.Thread(target=poll_link, args=(spec, index, writer, stop),
                                name=f"poll-{index}", daemon=True)
               for index in range(len(spec.links))]
    for poller in pollers:
        poller.start()
    print("bare pipeline running", flush=True)
    stop.wait()
    for poller in pollers:
        poller.join(5)
    publisher.stopping.set()
    publisher.join(GRACE_S)
    writer.queue.put(("stop",))
    writer.join(10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("--prefill", type=int, default=0, metavar="N")
    parser.add_argument("--readings", type=int, default=25)
    parser.add_argument("--device", default="backlog")
    parser.add_argument("--acquired-at", type=float, default=0.0)
    args = parser.parse_args(argv)
    spec = Spec.load(args.spec)
    if args.prefill:
        prefill(spec, args.prefill, args.readings, args.device,
                args.acquired_at or time.time() - 3600)
        return
    run(spec)
    sys.exit(0)


if __name__ == "__main__":
    main()
