"""A bug in a driver must not end acquisition on its link: the poller records a BAD
'agent_error' sample, logs the traceback once, and keeps polling."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime

import pytest
from edge_agent_drivers.modbus.settings import Channel, ModbusSettings
from support.waiting import wait_until

from edge_agent.config.schema import Device, PollingPolicy, Retention, TcpLink
from edge_agent.model import Quality, Reading, Sample
from edge_agent.poller import LinkPoller
from edge_agent.store.outbox import Outbox

DEVICE = Device("dev", "lan", 1, 0.01, ModbusSettings((Channel("v", 0),)))


class FlakyDriver:
    """Every third poll hits a programming error (not a device fault)."""

    device = DEVICE

    def __init__(self) -> None:
        self.calls = 0

    def poll(self, link, now: datetime) -> Sample:
        self.calls += 1
        if self.calls % 3 == 0:
            raise ZeroDivisionError("driver bug")
        return Sample("dev", now, (Reading("dev", "v", self.calls, "", Quality.GOOD, now),))

    def failed_sample(self, now: datetime, reason: str) -> Sample:
        return Sample("dev", now, (Reading("dev", "v", None, "", Quality.BAD, now, reason),))


def test_driver_bug_becomes_bad_sample_and_polling_continues(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="edge_agent")
    outbox = Outbox(tmp_path / "o.sqlite3", Retention(None, None, None))
    stop = threading.Event()
    poller = LinkPoller(TcpLink("lan", "127.0.0.1", 9), [FlakyDriver()], outbox,
                        PollingPolicy(retries=0, backoff_initial_s=0.01, backoff_max_s=0.02),
                        stop)
    poller.start()
    try:
        wait_until(lambda: outbox.stats().samples >= 12, 30, "12 samples")
    finally:
        stop.set()
        poller.thread.join(timeout=10)
    reasons = []
    while (message := outbox.claim(0, 100, 10_000_000)) is not None:
        reasons += [json.loads(e.body)["values"]["v"]["reason"] for e in message.entries]
    outbox.close()
    assert reasons.count("agent_error") >= 3
    assert reasons.count(None) >= 6
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, "the traceback is logged once, then counted"
    assert not poller.thread.is_alive()


def test_retries_end_when_the_stop_event_interrupts_the_wait():
    """A stopping poller makes no further attempt after its pause is cut short, and the
    caller gets the last real error (not a retry library's wrapper)."""
    from edge_agent.retry import retry_call

    stop = threading.Event()
    calls = []

    def failing() -> None:
        calls.append(1)
        if len(calls) == 2:
            stop.set()  # the agent is asked to stop during the second attempt
        raise TimeoutError(f"attempt {len(calls)}")

    waits: list[float] = []

    def stop_wait(seconds: float) -> bool:
        """Event.wait without the waiting: says at once whether the stop came."""
        waits.append(seconds)
        return stop.is_set()

    with pytest.raises(TimeoutError, match="attempt 2"):
        retry_call(failing, attempts=10, wait_s=5.0, retry_if=lambda err: True,
                   sleep=stop_wait)
    assert len(calls) == 2
    assert len(waits) == 2, "one pause after each failed attempt, the second one cut short"
