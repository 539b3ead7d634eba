"""Subscribes to everything the agent publishes, validates it, and lets tests wait on it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import jsonschema

from edge_agent.forward.mqtt import Subscriber

SCHEMA = json.loads(
    resources.files("edge_agent").joinpath("schema/payload-v1.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@dataclass(frozen=True)
class Received:
    """One sample as it arrived, with the message that carried it."""

    topic: str
    msg_id: str
    device: str
    historical: bool
    sample: dict


class Collector:
    """Collects every message under ``edge/#``; every payload must validate against v1."""

    def __init__(self, port: int, session_name: str = "test-collector") -> None:
        self._cond = threading.Condition()
        self.samples: list[Received] = []
        self.gaps: list[dict] = []
        #: alarm events in arrival order, each with the message's ``topic``, ``msg_id``
        #: and ``historical`` added
        self.alarms: list[dict] = []
        #: (message type, device, sample seqs) of every data and alarm message, in
        #: arrival order (an alarm message has no seqs)
        self.order: list[tuple[str, str, tuple[int, ...]]] = []
        self.status: list[dict] = []
        self.invalid: list[str] = []
        self._subscriber = Subscriber("127.0.0.1", port, "edge/#", self._on_message,
                                      session_name=session_name)

    def start(self) -> Collector:
        self._subscriber.start()
        return self

    def stop(self) -> None:
        self._subscriber.stop()

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            message = json.loads(payload)
            VALIDATOR.validate(message)
        except (ValueError, jsonschema.ValidationError) as err:
            with self._cond:
                self.invalid.append(f"{topic}: {err}")
                self._cond.notify_all()
            return
        with self._cond:
            if "state" in message:
                self.status.append(message)
            elif message["type"] == "gap":
                self.gaps.extend({**gap, "device": message["device"]} for gap in message["gaps"])
            elif message["type"] == "alarm":
                self.order.append(("alarm", message["device"], ()))
                self.alarms.extend({**event, "topic": topic, "msg_id": message["id"],
                                    "historical": message["historical"]}
                                   for event in message["alarms"])
            else:
                self.order.append(("data", message["device"],
                                   tuple(sample["seq"] for sample in message["samples"])))
                self.samples.extend(
                    Received(topic, message["id"], message["device"], message["historical"],
                             sample) for sample in message["samples"])
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Collector], bool], timeout_s: float,
                 what: str) -> None:
        """Block until ``predicate(self)`` holds; fail the test with ``what`` otherwise."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; "
                                         f"have {len(self.samples)} samples")
                self._cond.wait(min(remaining, 0.5))

    def seqs(self, device: str) -> list[int]:
        with self._cond:
            return [r.sample["seq"] for r in self.samples if r.device == device]

    def first_deliveries(self, device: str) -> list[Received]:
        """Samples of ``device`` in arrival order, duplicates removed (keep the first)."""
        seen: set[str] = set()
        result = []
        with self._cond:
            for received in self.samples:
                if received.device == device and received.sample["id"] not in seen:
                    seen.add(received.sample["id"])
                    result.append(received)
        return result

    def has_seqs(self, device: str, count: int) -> bool:
        return set(range(1, count + 1)) <= set(self.seqs(device))
