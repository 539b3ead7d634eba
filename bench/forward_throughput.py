"""How fast the agent empties its outbox into a broker, against bare paho on the same broker.

Run: ``.venv/bin/python bench/forward_throughput.py [--samples 3000]``. Prints figures and
ratios measured in this run only; nothing here asserts a time (shared machines are noisy).

* baseline: bare paho-mqtt, ``loop_start()``, QoS 1, the same in-flight window, publishing
  payloads of the agent's message size to the same private Mosquitto;
* agent: samples committed to a real outbox (WAL, synchronous=FULL), then the Forwarder
  publishes them and deletes each row on PUBACK, which costs one SQLite commit per ack
  batch. First with one sample per message (``max_samples_per_message: 1``), which
  compares message rates directly; then with the default batching (50 per message), the
  rate at which a real backlog drains.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config.schema import MqttConfig, Retention
from edge_agent.forward.forwarder import Forwarder
from edge_agent.model import Quality, Reading, Sample, utc_now
from edge_agent.store.outbox import Outbox
from edge_agent.tools.sim.broker import Mosquitto


def _sample(index: int) -> Sample:
    now = utc_now()
    readings = tuple(Reading("bench-gc", f"c{n}", 1.5 + index, "ppm", Quality.GOOD, now)
                     for n in range(8))
    return Sample("bench-gc", now, readings)


def bare_paho_rate(port: int, count: int, window: int, payload: bytes) -> float:
    """Messages per second acknowledged by the broker with paho alone."""
    done = threading.Event()
    acked = 0

    def on_publish(client, userdata, mid, reason_code, properties) -> None:
        nonlocal acked
        acked += 1
        if acked == count:
            done.set()

    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bare")
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    started = time.perf_counter()
    for _ in range(count):
        client.publish("bench/bare", payload, qos=1)
    if not done.wait(300):
        raise RuntimeError(f"bare paho: only {acked} of {count} acknowledged")
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return count / elapsed


def agent_rate(port: int, count: int, window: int, per_message: int,
               workdir: Path) -> tuple[float, int]:
    """Samples per second moved from outbox to broker (acknowledged and deleted), and the
    number of messages that took."""
    outbox = Outbox(workdir / f"outbox-{window}-{per_message}.db", Retention())
    for index in range(count):
        outbox.append(_sample(index))
    config = MqttConfig("127.0.0.1", port, client_id=f"bench-{window}", max_inflight=window,
                        max_samples_per_message=per_message)
    forwarder = Forwarder("bench", config, outbox)
    outbox.on_append = forwarder.wake
    started = time.perf_counter()
    forwarder.start()
    while outbox.stats().samples:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    messages = forwarder.stats.acknowledged
    forwarder.stop(grace_s=2)
    outbox.close()
    return count / elapsed, messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        from edge_agent.payload import encode_sample_body
        payload = encode_sample_body(_sample(0), 1, "x" * 26).encode()
        print(f"{args.samples} samples of 8 channels, message body ~{len(payload)} bytes")
        for window in (1, 20):
            bare = bare_paho_rate(broker.port, args.samples, window, payload)
            single, _ = agent_rate(broker.port, args.samples, window, 1, Path(tmp))
            batched, messages = agent_rate(broker.port, args.samples, window, 50, Path(tmp))
            print(f"window {window:>2}: bare paho {bare:7.0f} msg/s | agent, 1 sample/message "
                  f"{single:7.0f} msg/s = {single / bare:4.2f} x bare | agent, batched "
                  f"{batched:7.0f} samples/s in {messages} messages = {batched / bare:4.2f} x")


if __name__ == "__main__":
    main()
