"""Broken answers on an RS-485 line (late, short, truncated, bad CRC, garbage in front,
another unit's or another function's frame, busy) are transient errors: counted, never
decoded, never a crash, and the next request is answered cleanly.

The 'device' is a raw RTU slave on a pty pair (tests/support/rawrtu.py), written without
pymodbus. Its late answer is held until the client's drain waits for a quiet line
(tests/support/drainclock.py), so no race with the machine's load decides the outcome."""

from __future__ import annotations

import itertools
import json
import queue
import threading
from collections.abc import Iterator

import pytest
from edge_agent_drivers.modbus.protocol import pymodbus_client
from edge_agent_drivers.modbus.protocol.transport import ModbusExceptionReply, ModbusLinkClient
from edge_agent_drivers.modbus.settings import RegisterKind
from support.drainclock import LateAnswerInTheDrain
from support.rawrtu import RawRtuSlave
from support.station import write_station
from support.waiting import wait_until

from edge_agent.config.loader import load_config
from edge_agent.config.schema import Retention, SerialLink
from edge_agent.driver import load_driver
from edge_agent.link import BadResponse, DeviceTimeout
from edge_agent.poller import LinkPoller
from edge_agent.store.outbox import Outbox
from edge_agent.tools.sim.ptypair import PtyPair

# behaviour -> (error raised, or None for a correct answer; what the message says)
EXPECTED = {
    "silent": (DeviceTimeout, "no answer within 200 ms"),
    "late": (DeviceTimeout, "no answer within 200 ms"),
    "short": (BadResponse, "2 registers; asked 3"),
    "truncated": (BadResponse, "only bytes that are not its answer"),
    "bad_crc": (BadResponse, "only bytes that are not its answer"),
    "garbage_first": (BadResponse, "only bytes that are not its answer"),
    "noise": (BadResponse, "only bytes that are not its answer"),
    "other_unit": (BadResponse, "only bytes that are not its answer"),
    "other_function": (BadResponse, r"function 4; reading holding 2\+3 asks function 3"),
    "busy": (ModbusExceptionReply, "exception 06"),
    "split": (None, ""),
    "bytewise": (None, ""),
}


def queued(answers: queue.Queue[str]) -> Iterator[str]:
    while True:
        yield answers.get()


@pytest.mark.parametrize("behaviour", list(EXPECTED))
def test_broken_answer_is_a_transient_error_and_the_line_is_clean_after(behaviour, monkeypatch):
    answers: queue.Queue[str] = queue.Queue()
    with PtyPair() as pty, RawRtuSlave(pty.device_path, queued(answers)) as slave, \
            LateAnswerInTheDrain(slave.release_late, pty.agent_path) as clock:
        monkeypatch.setattr(pymodbus_client, "drain_clock", clock)
        error, message = EXPECTED[behaviour]
        # A correct answer in pieces (bytewise: 13 writes 5 ms apart) is waited for as
        # long as it takes: 200 ms, which a loaded machine's 13 wake-ups overran, is only
        # for the broken answers, whose messages name it.
        timeout_ms = 200 if error is not None else 10_000
        client = ModbusLinkClient(SerialLink("bus", pty.agent_path, timeout_ms=timeout_ms))
        try:
            answers.put(behaviour)
            if error is None:
                assert client.read_registers(1, RegisterKind.HOLDING, 2, 3) == [102, 103, 104]
            else:
                with pytest.raises(error, match=message) as caught:
                    client.read_registers(1, RegisterKind.HOLDING, 2, 3)
                assert caught.value.transient
            assert clock.released == (behaviour == "late")  # it landed in the drain
            answers.put("good")  # another address: a leftover of the broken answer
            assert client.read_registers(1, RegisterKind.HOLDING, 20, 3) == [120, 121, 122]
        finally:
            client.close()


def test_late_answer_fitting_the_next_request_is_drained_not_taken_as_its_answer(
        monkeypatch):
    """RTU answers carry no transaction id and no address. A late answer from the same
    unit, with the same function and count as the next request, passes every check on
    the answer; only the client's drain after the timeout (wait for a quiet line, discard
    what arrived) keeps it from being read as the next request's answer.

    The slave holds its answer to the first read past the client's 200 ms timeout and
    sends it while the drain waits for quiet (the drain's clock releases it on its first
    sleep). A client that did not drain would send the second request at once; the slave
    then sends the held answer right before the second one, the late frame is the first
    thing the client receives, and the second read returns [102, 103, 104]."""
    with PtyPair() as pty, RawRtuSlave(pty.device_path, iter(["late", "good"])) as slave, \
            LateAnswerInTheDrain(slave.release_late, pty.agent_path) as clock:
        monkeypatch.setattr(pymodbus_client, "drain_clock", clock)
        client = ModbusLinkClient(SerialLink("bus", pty.agent_path, timeout_ms=200))
        try:
            with pytest.raises(DeviceTimeout):
                client.read_registers(1, RegisterKind.HOLDING, 2, 3)  # late: [102, 103, 104]
            assert clock.released == 1  # sent after the timeout, inside the drain's wait
            assert client.read_registers(1, RegisterKind.HOLDING, 20, 3) == [120, 121, 122]
            assert slave.answered["late"] == 1
        finally:
            client.close()


CYCLE = ["good", "silent", "good", "short", "good", "bad_crc", "good", "garbage_first",
         "good", "busy", "late", "good", "truncated", "good", "other_unit", "bytewise",
         "other_function", "good", "noise", "split"]


def test_poller_survives_a_line_full_of_broken_answers_and_counts_them(tmp_path, monkeypatch):
    pty = PtyPair()
    path = write_station(
        tmp_path / "station.yaml", broker_port=1883,
        links={"bus": {"type": "serial", "port": pty.agent_path, "timeout_ms": 200}},
        devices=[{"id": "det-1", "link": "bus", "unit_id": 1, "interval_s": 0.02,
                  "channels": [{"name": "co", "address": 0, "unit": "ppm"}]}],
        polling={"retries": 0, "backoff_initial_s": 0.01, "backoff_max_s": 0.02})
    config = load_config(path)
    outbox = Outbox(tmp_path / "o.sqlite3", Retention(None, None, None))
    stop = threading.Event()
    poller = LinkPoller(config.links["bus"], [load_driver(config.devices[0])], outbox,
                        config.polling, stop)
    slave = RawRtuSlave(pty.device_path, itertools.cycle(CYCLE))
    with slave, LateAnswerInTheDrain(slave.release_late, pty.agent_path) as clock:
        monkeypatch.setattr(pymodbus_client, "drain_clock", clock)
        poller.start()
        try:
            # every broken answer once, then the first good one of the next round: the
            # poller went through all of them (a second round took 3 s more, proved no more)
            wait_until(lambda: sum(slave.answered.values()) >= len(CYCLE) + 1, 60,
                       "a round of broken answers and the good one after it")
            assert poller.thread.is_alive()
        finally:
            stop.set()
            poller.thread.join(timeout=10)
    pty.close()
    state = poller.devices[0]
    samples = []
    while (message := outbox.claim(0, 1000, 10_000_000)) is not None:
        samples += [json.loads(e.body)["values"]["co"] for e in message.entries]
    outbox.close()
    assert state.errors["agent_error"] == 0
    assert {"timeout", "bad_response", "exception_06"} <= set(state.errors)
    assert state.entered["degraded"] >= 1
    assert len(samples) == state.samples_stored == state.polls
    good = [s for s in samples if s["quality"] == "GOOD"]
    bad = [s for s in samples if s["quality"] != "GOOD"]
    assert good and all(s["value"] == 100 for s in good), "a broken answer was decoded"
    assert bad and {s["reason"] for s in bad} <= {"timeout", "bad_response", "exception_06"}
    assert sum(state.errors.values()) == len(bad)

