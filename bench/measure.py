"""Measuring a pipeline from outside: its process in /proc, and what reaches the broker.

* CPU: utime + stime of the process (all its threads) from /proc/PID/stat over a window,
  as a percentage of one core.
* Memory: VmRSS (now) and VmHWM (peak) from /proc/PID/status.
* Latency: a subscriber records, for every sample, its arrival time minus the sample's
  ``acquired_at`` (the payload's acquisition time, milliseconds); one clock, one machine.
* Counting: samples are keyed (device, seq), so a duplicate is counted once and a hole
  shows up as a missing sequence number.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(rest.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


@dataclass(frozen=True)
class Arrival:
    device: str
    seq: int
    at: float          # arrival, unix time
    latency_s: float   # arrival minus acquired_at
    readings: int
    historical: bool


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Arrivals:
    """Subscribes to ``edge/#`` or ``topic`` (QoS 1, persistent session) and keeps the
    first arrival of every sample. The session survives a broker restart (the drain starts
    the broker after the backlog is in place), so nothing published before we reconnect
    is missed."""

    def __init__(self, port: int, client_id: str, topic: str = "edge/#") -> None:
        """``topic``: what to subscribe to (a single device's topics measure its latency
        without waiting behind other devices' messages queued at the broker)."""
        self._lock = threading.Lock()
        self._topic = topic
        self.first: dict[tuple[str, int], Arrival] = {}
        self.duplicates = 0
        self.received = 0  # messages, for "has it gone quiet"
        self._subscribed = threading.Event()
        self._client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   client_id=client_id, clean_session=False)
        self._client.reconnect_delay_set(0.05, 0.2)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.on_message = self._on_message
        self._port = port

    def start(self, timeout_s: float = 20) -> Arrivals:
        self._client.connect_async("127.0.0.1", self._port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            raise RuntimeError(f"subscriber: no SUBACK from the broker on port {self._port}")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(self._topic, qos=1)

    def _on_message(self, client, userdata, message) -> None:
        at = time.time()
        try:
            doc = json.loads(message.payload)
        except ValueError:
            return
        samples = doc.get("samples") if isinstance(doc, dict) else None
        if not samples:
            return  # status and gap messages
        device, historical = doc["device"], bool(doc.get("historical"))
        with self._lock:
            self.received += 1
            for sample in samples:
                key = (device, int(sample["seq"]))
                if key in self.first:
                    self.duplicates += 1
                    continue
                self.first[key] = Arrival(device, key[1], at, at - _epoch(sample["acquired_at"]),
                                          len(sample["values"]), historical)

    def snapshot(self) -> list[Arrival]:
        with self._lock:
            return list(self.first.values())

    def count(self, devices: set[str] | None = None) -> int:
        with self._lock:
            if devices is None:
                return len(self.first)
            return sum(1 for device, _ in self.first if device in devices)

    def missing(self, accepted: dict[str, int], devices: set[str] | None = None) -> int:
        """Samples accepted (seq 1..n per device) that have not arrived."""
        with self._lock:
            return sum(1 for device, last in accepted.items()
                       if devices is None or device in devices
                       for seq in range(1, last + 1) if (device, seq) not in self.first)

    def wait_quiet(self, quiet_s: float = 1.0, limit_s: float = 30.0) -> None:
        """Until no message has arrived for ``quiet_s`` (or ``limit_s`` passed)."""
        deadline = time.monotonic() + limit_s
        last = -1
        while time.monotonic() < deadline:
            with self._lock:
                now = self.received
            if now == last:
                return
            last = now
            time.sleep(quiet_s)


def latency_ms(arrivals: list[Arrival]) -> tuple[float, float]:
    """(median, p99) in milliseconds."""
    values = [a.latency_s * 1000 for a in arrivals]
    return (statistics.median(values) if values else float("nan"), percentile(values, 0.99))
