"""bdSeq across restarts, NCMD rebirth decoding and the primary host's STATE: the parts of
Sparkplug's session rules that are not payload building."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from esio_spb_builder.core import sparkplug_b_pb2 as tahu

from edge_agent.sparkplug.bdseq import BdSeqFile
from edge_agent.sparkplug.commands import CommandError, decode_node_command, rebirth_command
from edge_agent.sparkplug.model import ChannelSpec, DeviceSpec, EdgeNodeSpec
from edge_agent.sparkplug.session import REBIRTH, EdgeNodeSession
from edge_agent.sparkplug.state import (
    HostState,
    PrimaryHostWatch,
    StateError,
    encode_state,
    parse_state,
)

T0 = datetime(2026, 11, 23, 18, 24, 30, 769000, tzinfo=UTC)
NODE = EdgeNodeSpec("plant", "cp-east-03", "edge-agent 0.1.0",
                    (DeviceSpec("gc-1", (ChannelSpec("benzene", "float32", "mg/m3"),)),))


# -- bdSeq --------------------------------------------------------------------------------

def test_tck_id_topics_nbirth_bdseq_increment(tmp_path):
    """bdSeq starts at 0 and goes up by one per CONNECT, across restarts (a new object on
    the same file is a restarted agent), wrapping 255 -> 0."""
    path = tmp_path / "state" / "sparkplug.bdseq"
    assert [BdSeqFile(path).next_for_connect() for _ in range(3)] == [0, 1, 2]
    assert path.read_text() == "2\n"
    path.write_text("254\n")
    counter = BdSeqFile(path)
    assert [counter.next_for_connect() for _ in range(3)] == [255, 0, 1]


@pytest.mark.parametrize("garbage", [b"", b"banana\n", b"300\n", b"-1\n", b"\xff\xfe"])
def test_a_garbled_bdseq_file_restarts_numbering_logged_and_counted(tmp_path, caplog, garbage):
    path = tmp_path / "sparkplug.bdseq"
    path.write_bytes(garbage)
    counter = BdSeqFile(path)
    with caplog.at_level(logging.ERROR):
        assert counter.next_for_connect() == 0
    assert counter.unreadable == 1
    assert str(path) in caplog.text and "numbering connections from 0" in caplog.text
    assert counter.next_for_connect() == 1  # the file is sound again


def test_the_will_of_each_connection_carries_that_connections_bdseq(tmp_path):
    counter = BdSeqFile(tmp_path / "sparkplug.bdseq")
    wills = [EdgeNodeSession(NODE, counter.next_for_connect()).will(T0) for _ in range(2)]
    assert [tahu.Payload.FromString(w.payload).metrics[0].long_value for w in wills] == [0, 1]


# -- NCMD ---------------------------------------------------------------------------------

def test_tck_id_operational_behavior_data_commands_rebirth_name_and_value():
    """A host's rebirth request: NCMD with Node Control/Rebirth = true, by name or by
    the NBIRTH alias; false, or another metric, asks for nothing."""
    assert decode_node_command(rebirth_command(1)).rebirth
    alias = EdgeNodeSession(NODE, 0).alias_of(None, REBIRTH)
    by_alias = tahu.Payload(timestamp=1)
    by_alias.metrics.add(alias=alias, datatype=tahu.Boolean, boolean_value=True)
    assert decode_node_command(by_alias.SerializeToString(), rebirth_alias=alias).rebirth
    other = tahu.Payload(timestamp=1)
    other.metrics.add(name=REBIRTH, boolean_value=False)
    other.metrics.add(name="Node Control/Reboot", boolean_value=True)
    command = decode_node_command(other.SerializeToString())
    assert not command.rebirth and command.ignored == ("Node Control/Reboot",)


def test_rebirth_command_is_a_tahu_payload():
    metric = tahu.Payload.FromString(rebirth_command(5)).metrics[0]
    assert (metric.name, metric.datatype, metric.boolean_value) == (REBIRTH, tahu.Boolean, True)


def test_a_garbled_ncmd_is_a_command_error_not_a_crash():
    with pytest.raises(CommandError, match="not a Sparkplug B payload"):
        decode_node_command(b"\xff\xff\xff\xff")


# -- STATE --------------------------------------------------------------------------------

def test_tck_id_payloads_state_birth_and_will_payload():
    """UTF-8 JSON with online and timestamp (ms since the epoch, UTC)."""
    assert json.loads(encode_state(True, T0)) == {"online": True, "timestamp": 1795458270769}
    assert parse_state(encode_state(False, T0)) == HostState(False, 1795458270769)


@pytest.mark.parametrize("payload,said", [
    (b"ONLINE", "Sparkplug 2.x"), (b"{", "not JSON"), (b"[1]", "JSON list"),
    (b'{"online": "yes", "timestamp": 1}', "online: 'yes'"),
    (b'{"online": true}', "timestamp: None"), (b"\xff", "not JSON")])
def test_a_malformed_state_says_what_is_wrong(payload, said):
    with pytest.raises(StateError, match=said):
        parse_state(payload)


def test_primary_host_watch_starts_offline_and_ignores_older_state():
    watch = PrimaryHostWatch()
    assert not watch.online
    assert watch.update(HostState(True, 2000)) and watch.online
    assert not watch.update(HostState(False, 1000))  # a retained STATE of an old session
    assert watch.online and watch.ignored_older == 1
    assert watch.update(HostState(False, 3000)) and not watch.online
