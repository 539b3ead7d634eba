"""SIGKILL the agent at random moments, with the broker up and with it down: after a
restart every accepted sample arrives at least once, and a duplicate is always a resend of
a message that was in flight, carrying the same message id."""

from __future__ import annotations

import random
from collections import defaultdict

from support.station import (
    AgentProcess,
    accepted_seqs,
    outbox_rows,
    outbox_snapshot,
    seqs_in_outbox,
    write_station,
)
from support.waiting import wait_until

from edge_agent.tools.sim.simserver import SimServer, SimUnit

KILLS = 8


def test_agent_sigkilled_repeatedly_every_accepted_sample_arrives(tmp_path, broker, collector):
    rng = random.Random(20261123)
    server = SimServer([SimUnit(1, holding={0: 1}), SimUnit(2, holding={0: 2})]).start()
    links = {"gw": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port}}
    devices = [{"id": f"dev-{u}", "link": "gw", "unit_id": u, "interval_s": 0.05,
                "channels": [{"name": "value", "address": 0, "type": "uint16"}]}
               for u in (1, 2)]
    config = write_station(tmp_path / "station.yaml", links=links, devices=devices,
                           broker_port=broker.port,
                           mqtt={"max_samples_per_message": 7, "max_inflight": 5})
    outbox = tmp_path / "outbox.sqlite3"

    def committed() -> int:
        return accepted_seqs(outbox).get("dev-1", 0) if outbox.exists() else 0

    rounds: list[str] = []  # what each kill left, for the failure message
    try:
        for round_no in range(KILLS):
            broker_down = round_no % 3 == 1
            if broker_down:
                broker.stop()
            agent = AgentProcess(config, tmp_path / f"agent-{round_no}.log").start()
            target = committed() + rng.randint(3, 40)
            wait_until(lambda t=target: committed() >= t, 60,
                       f"round {round_no}: {target} samples committed")
            agent.kill()
            rounds.append(f"round {round_no} (broker {'down' if broker_down else 'up'}): "
                          f"killed with {accepted_seqs(outbox)} committed, "
                          f"{outbox_rows(outbox)} rows in the outbox")
            if broker_down:
                broker.start()
        agent = AgentProcess(config, tmp_path / "agent-last.log").start().wait_running()
        wait_until(lambda: committed() > target + 20, 60, "polling after the last restart")
        assert agent.terminate() == 0, agent.log()[-3000:]
        final = AgentProcess(config, tmp_path / "agent-final.log").start().wait_running()
        # ^ drains what the clean stop left
        drained: dict[str, int] = {}  # last seqs when the outbox was seen empty

        def empty() -> bool:
            rows, seqs = outbox_snapshot(outbox)
            drained.update(seqs)
            return rows == 0

        wait_until(empty, 120, "the outbox to drain")
        assert final.terminate() == 0
    finally:
        server.stop()

    # The final agent polls on while it drains, and a clean stop gives in-flight messages
    # their grace but claims nothing new: samples it committed after the drain may stay
    # in the outbox for the next start. Those must be there; every other one must arrive.
    accepted = accepted_seqs(outbox)
    kept = seqs_in_outbox(outbox)
    assert all(seq > drained.get(device, 0) for device, seq in kept), \
        f"only samples committed after the drain may be left: {sorted(kept)}, {drained}"
    for device, last in accepted.items():
        waited = set(range(1, last + 1)) - {seq for d, seq in kept if d == device}
        try:
            collector.wait_for(lambda c, d=device, w=waited: w <= set(c.seqs(d)), 60,
                               f"{device}: all {len(waited)} accepted samples not left "
                               f"in the outbox")
        except AssertionError as err:
            missing = sorted(waited - set(collector.seqs(device)))
            raise AssertionError(f"{err}; missing seqs {missing}; " + "; ".join(rounds)) from err
    msg_ids_by_sample: dict[str, set[str]] = defaultdict(set)
    sample_ids_by_seq: dict[tuple[str, int], set[str]] = defaultdict(set)
    for received in collector.samples:
        msg_ids_by_sample[received.sample["id"]].add(received.msg_id)
        sample_ids_by_seq[(received.device, received.sample["seq"])].add(received.sample["id"])
    assert all(len(ids) == 1 for ids in sample_ids_by_seq.values()), \
        "one sequence number must always mean one sample"
    assert all(len(ids) == 1 for ids in msg_ids_by_sample.values()), \
        "a resent sample must travel in the same message (same id) as before"
    delivered = {key for key in sample_ids_by_seq}
    expected = {(d, s) for d, last in accepted.items() for s in range(1, last + 1)}
    assert delivered | kept == expected
    duplicates = len(collector.samples) - len(msg_ids_by_sample)
    print(f"{sum(accepted.values())} samples accepted over {KILLS} SIGKILLs, "
          f"{duplicates} duplicate deliveries")
