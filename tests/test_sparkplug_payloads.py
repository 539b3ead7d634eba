"""What the Sparkplug session encodes, read back with an independent decoder: the classes
a PyPI package generated from Eclipse Tahu's own sparkplug_b.proto (not from ours). Each
test is named after the Sparkplug 3.0 assertion (tck-id) it proves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from esio_spb_builder.core import sparkplug_b_pb2 as tahu

from edge_agent.model import Quality, Reading, Sample
from edge_agent.sparkplug.model import ChannelSpec, DeviceSpec, EdgeNodeSpec
from edge_agent.sparkplug.session import EdgeNodeSession, SessionOrderError
from edge_agent.sparkplug.topics import (
    SparkplugIdError,
    Verb,
    node_topic,
    parse_topic,
    state_topic,
)

T0 = datetime(2026, 11, 23, 18, 24, 30, 769000, tzinfo=UTC)
T0_MS = 1795458270769  # 2026-11-23T18:24:30.769Z
GC = DeviceSpec("gc-1", (ChannelSpec("benzene", "float32", "mg/m3"),
                         ChannelSpec("toluene", "float32", "mg/m3")))
SENSORS = DeviceSpec("sensors", (
    ChannelSpec("h2s", "int16", "ppm"), ChannelSpec("so2", "uint16", "ppm", scaled=True),
    ChannelSpec("count", "uint32"), ChannelSpec("total", "int64"), ChannelSpec("big", "uint64"),
    ChannelSpec("ratio", "float64"), ChannelSpec("alarm", "bool"), ChannelSpec("tag", "string"),
    ChannelSpec("code", "bcd16"), ChannelSpec("text_value", "number")))
NODE = EdgeNodeSpec("plant", "cp-east-03", "edge-agent 0.1.0", (GC, SENSORS),
                    (("Station", "cp-east-03"),))


def decoded(message) -> tahu.Payload:
    return tahu.Payload.FromString(message.payload)


def born(bd_seq: int = 7) -> tuple[EdgeNodeSession, list]:
    session = EdgeNodeSession(NODE, bd_seq)
    return session, session.births(T0)


def reading(channel: str, value, quality=Quality.GOOD, reason=None, at=T0, device="gc-1"):
    return Reading(device, channel, value, "", quality, at, reason)


def gc_sample(benzene=0.572, toluene=1.5, at=T0, analysis=None) -> Sample:
    return Sample("gc-1", at, (reading("benzene", benzene, at=at),
                               reading("toluene", toluene, at=at)), instrument_time=analysis)


def by_name(payload: tahu.Payload) -> dict[str, tahu.Payload.Metric]:
    return {metric.name: metric for metric in payload.metrics}


def props(metric: tahu.Payload.Metric) -> dict[str, tahu.Payload.PropertyValue]:
    return dict(zip(metric.properties.keys, metric.properties.values, strict=True))


# -- topics ------------------------------------------------------------------------------

def test_tck_id_topic_structure_namespace_a():
    """spBv1.0/group/VERB/edge_node[/device], and the 3.0 STATE topic."""
    session, births = born()
    assert [m.topic for m in births] == ["spBv1.0/plant/NBIRTH/cp-east-03",
                                         "spBv1.0/plant/DBIRTH/cp-east-03/gc-1",
                                         "spBv1.0/plant/DBIRTH/cp-east-03/sensors"]
    assert session.will(T0).topic == "spBv1.0/plant/NDEATH/cp-east-03"
    assert session.device_death("gc-1", T0).topic == "spBv1.0/plant/DDEATH/cp-east-03/gc-1"
    assert state_topic("scada-1") == "spBv1.0/STATE/scada-1"
    for verb in Verb:
        topic = node_topic(verb, "g", "n", "d" if verb.is_device else None)
        parsed = parse_topic(topic)
        assert (parsed.group, parsed.verb, parsed.edge_node) == ("g", verb, "n")
    assert parse_topic("spBv1.0/STATE/scada-1").host_id == "scada-1"


@pytest.mark.parametrize("field,kwargs", [
    ("group id", {"group": "plant/east"}), ("edge node id", {"edge_node": "cp+1"}),
    ("device id", {"device": "gc#1"}), ("group id", {"group": ""})])
def test_tck_id_topic_structure_namespace_valid_ids(field, kwargs):
    """Ids must not hold / + # (they would address another node or be a filter)."""
    args = {"group": "plant", "edge_node": "cp", "device": "gc", **kwargs}
    with pytest.raises(SparkplugIdError, match=field):
        node_topic(Verb.DDATA, args["group"], args["edge_node"], args["device"])


@pytest.mark.parametrize("topic", ["spBv1.0/plant/DDATA/cp", "spBv1.0/plant/NDATA/cp/gc",
                                   "spAv1.0/plant/NDATA/cp", "spBv1.0/plant/HELLO/cp",
                                   "spBv1.0//NDATA/cp"])
def test_malformed_topics_are_refused_with_the_reason(topic):
    with pytest.raises(ValueError, match="spBv1.0|device level|message type|expected"):
        parse_topic(topic)


# -- births and deaths --------------------------------------------------------------------

def test_tck_id_payloads_nbirth_seq_and_timestamp():
    _, births = born()
    nbirth = decoded(births[0])
    assert nbirth.HasField("seq") and nbirth.seq == 0
    assert nbirth.timestamp == T0_MS  # tck-id-payloads-nbirth-timestamp, in UTC ms


def test_tck_id_payloads_nbirth_bdseq_and_rebirth_req():
    _, births = born(bd_seq=42)
    metrics = by_name(decoded(births[0]))
    assert metrics["bdSeq"].datatype == tahu.Int64 and metrics["bdSeq"].long_value == 42
    rebirth = metrics["Node Control/Rebirth"]
    assert rebirth.datatype == tahu.Boolean
    assert rebirth.HasField("boolean_value") and rebirth.boolean_value is False
    assert metrics["Properties/Agent Version"].string_value == "edge-agent 0.1.0"
    assert metrics["Properties/Station"].string_value == "cp-east-03"


def test_tck_id_topics_nbirth_bdseq_matching():
    """The NBIRTH's bdSeq is the one in the will registered at CONNECT."""
    session, births = born(bd_seq=200)
    will = by_name(decoded(session.will(T0)))
    assert will["bdSeq"].long_value == by_name(decoded(births[0]))["bdSeq"].long_value == 200


def test_tck_id_payloads_ndeath_seq_and_will_qos_retain():
    session, _ = born()
    will = session.will(T0)
    assert not decoded(will).HasField("seq")
    assert (will.qos, will.retain) == (1, False)  # ...-ndeath-will-message-qos, -retain
    assert decoded(will).metrics[0].datatype == tahu.Int64  # tck-id-payloads-ndeath-bdseq


def test_tck_id_payloads_qos_and_retain_of_births_data_and_deaths():
    """NBIRTH, DBIRTH, DDATA, DDEATH: QoS 0, not retained (tck-id-payloads-nbirth-qos,
    -nbirth-retain, -dbirth-qos, -dbirth-retain, -ddata-qos, -ddata-retain)."""
    session, births = born()
    messages = [*births, session.device_data(gc_sample(), T0),
                session.device_death("gc-1", T0)]
    assert [(m.qos, m.retain) for m in messages] == [(0, False)] * 5


def test_tck_id_payloads_sequence_num_incrementing():
    """seq: 0 on NBIRTH, +1 on every message, 255 -> 0, always present but on NDEATH
    (tck-id-payloads-sequence-num-always-included, -dbirth-seq-inc, -ddata-seq-inc)."""
    session, births = born()
    seqs = [decoded(m).seq for m in births]
    for step in range(300):
        message = session.device_data(gc_sample(benzene=float(step)), T0)
        assert decoded(message).HasField("seq")
        seqs.append(decoded(message).seq)
    seqs.append(decoded(session.device_death("gc-1", T0)).seq)
    assert seqs == [n % 256 for n in range(len(seqs))]
    assert max(seqs) == 255


def test_tck_id_payloads_dbirth_order():
    """No DBIRTH before NBIRTH; no DDATA or DDEATH before the device's DBIRTH
    (tck-id-payloads-ddata-order)."""
    session = EdgeNodeSession(NODE, 0)
    with pytest.raises(SessionOrderError, match="before NBIRTH"):
        session.device_birth("gc-1", T0)
    with pytest.raises(SessionOrderError, match="before NBIRTH"):
        session.device_data(gc_sample(), T0)
    session.births(T0)
    session.device_death("gc-1", T0)
    with pytest.raises(SessionOrderError, match="before its DBIRTH"):
        session.device_data(gc_sample(), T0)
    with pytest.raises(SessionOrderError, match="before its DBIRTH"):
        session.device_death("gc-1", T0)
    back = session.device_birth("gc-1", T0, gc_sample(benzene=2.0))  # the device returns
    assert by_name(decoded(back))["benzene"].float_value == 2.0
    assert session.device_data(gc_sample(benzene=3.0), T0) is not None


def test_tck_id_operational_behavior_data_commands_rebirth_action_3():
    """A rebirth: NBIRTH again with the connection's bdSeq, seq from 0, DBIRTHs after."""
    session, _ = born(bd_seq=9)
    session.device_data(gc_sample(), T0)
    again = session.births(T0, {"gc-1": gc_sample(benzene=4.0)})
    assert [m.verb for m in again] == [Verb.NBIRTH, Verb.DBIRTH, Verb.DBIRTH]
    assert [decoded(m).seq for m in again] == [0, 1, 2]
    assert by_name(decoded(again[0]))["bdSeq"].long_value == 9
    assert by_name(decoded(again[1]))["benzene"].float_value == 4.0


def test_a_rebirth_without_samples_carries_the_values_last_sent():
    """A host that asks for a rebirth gets the current values with their own times, not
    nulls: the session remembers what this connection sent."""
    session, _ = born()
    later = T0 + timedelta(minutes=1)
    session.device_data(gc_sample(benzene=0.9, at=later), later)
    again = session.births(T0 + timedelta(minutes=2))
    benzene = by_name(decoded(again[1]))["benzene"]
    assert benzene.float_value == pytest.approx(0.9)
    assert benzene.timestamp == T0_MS + 60000
    assert not by_name(decoded(again[2]))["h2s"].HasField("int_value")  # never read: null
    assert by_name(decoded(again[2]))["h2s"].is_null
    assert session.device_data(gc_sample(benzene=0.9, at=later), later) is None


# -- aliases and datatypes ----------------------------------------------------------------

def test_tck_id_payloads_alias_uniqueness_and_birth_requirement():
    _, births = born()
    metrics = [m for message in births for m in decoded(message).metrics
               if m.name != "Node Control/Rebirth"]
    assert all(m.name and m.HasField("alias") for m in metrics)
    aliases = [m.alias for m in metrics]
    assert len(aliases) == len(set(aliases)) == 3 + 2 + 10


def test_tck_id_operational_behavior_data_commands_rebirth_name_aliases():
    """NBIRTH's Node Control/Rebirth has a name and no alias."""
    _, births = born()
    (rebirth,) = [m for m in decoded(births[0]).metrics if m.name == "Node Control/Rebirth"]
    assert not rebirth.HasField("alias")


def test_tck_id_payloads_alias_data_cmd_requirement_and_datatype_not_req():
    """DDATA metrics: alias only, no name, no datatype; the alias is the birth's."""
    session, births = born()
    birth_aliases = {m.name: m.alias for m in decoded(births[1]).metrics}
    ddata = decoded(session.device_data(gc_sample(), T0))
    assert [(m.name, m.HasField("datatype")) for m in ddata.metrics] == [("", False)] * 2
    assert [m.alias for m in ddata.metrics] == [birth_aliases["benzene"], birth_aliases["toluene"]]


SENSOR_VALUES = [  # channel, value, Sparkplug datatype, field, value on the wire
    ("h2s", -3, tahu.Int16, "int_value", 65533),
    ("so2", 12.5, tahu.Double, "double_value", 12.5),
    ("count", 4000000000, tahu.UInt32, "int_value", 4000000000),
    ("total", -2, tahu.Int64, "long_value", 2**64 - 2),
    ("big", 2**63, tahu.UInt64, "long_value", 2**63),
    ("ratio", 0.1, tahu.Double, "double_value", 0.1),
    ("alarm", True, tahu.Boolean, "boolean_value", True),
    ("tag", "GC-7890A", tahu.String, "string_value", "GC-7890A"),
    ("code", 1234, tahu.UInt16, "int_value", 1234),
    ("text_value", 0.25, tahu.Double, "double_value", 0.25),
]


def test_tck_id_payloads_metric_datatype_req_and_value():
    """Every DBIRTH metric has its datatype, from the channel type (a scaled integer is a
    Double), and its value in the field that datatype uses (negative integers as two's
    complement of their width)."""
    session = EdgeNodeSession(NODE, 0)
    sample = Sample("sensors", T0, tuple(reading(name, value, device="sensors")
                                         for name, value, *_ in SENSOR_VALUES))
    births = session.births(T0, {"sensors": sample})
    metrics = by_name(decoded(births[2]))
    for name, _value, datatype, field, wire in SENSOR_VALUES:
        assert metrics[name].datatype == datatype, name
        assert metrics[name].WhichOneof("value") == field, name
        assert getattr(metrics[name], field) == wire, name
    assert decoded(births[1]).metrics[0].datatype == tahu.Float  # float32


def test_a_value_that_does_not_fit_its_datatype_is_sent_null_and_counted():
    session, _ = born()
    message = session.device_data(Sample("sensors", T0, (
        reading("h2s", 70000, device="sensors"), reading("alarm", "yes", device="sensors"))), T0)
    for metric in decoded(message).metrics:
        assert metric.is_null and metric.WhichOneof("value") is None
        assert props(metric)["reason"].string_value == "type_mismatch"
    assert session.counters.type_mismatches == 2


def test_a_channel_missing_from_the_birth_is_left_out_and_counted():
    session, _ = born()
    message = session.device_data(Sample("gc-1", T0, (
        reading("benzene", 1.0), reading("xylene", 2.0))), T0)
    assert len(decoded(message).metrics) == 1
    assert session.counters.unknown_channels == 1


# -- properties: unit, quality, reason, analysis time ---------------------------------------

def test_tck_id_payloads_propertyset_keys_array_size_and_propertyvalue_type_req():
    session, births = born()
    later = session.device_data(gc_sample(benzene=None), T0)
    for metric in [*decoded(births[1]).metrics, *decoded(later).metrics]:
        assert len(metric.properties.keys) == len(metric.properties.values) > 0
        assert all(value.HasField("type") for value in metric.properties.values)


def test_dbirth_carries_engineering_unit_quality_and_reason_as_properties():
    session = EdgeNodeSession(NODE, 0)
    sample = Sample("gc-1", T0, (reading("benzene", 0.5),
                                 reading("toluene", None, Quality.BAD, "timeout")))
    metrics = by_name(decoded(session.births(T0, {"gc-1": sample})[1]))
    benzene, toluene = props(metrics["benzene"]), props(metrics["toluene"])
    assert benzene["engUnit"].string_value == "mg/m3"
    assert benzene["reason"].is_null and benzene["reason"].type == tahu.String
    assert toluene["reason"].string_value == "timeout"
    assert metrics["toluene"].is_null


@pytest.mark.parametrize("quality,code", [(Quality.GOOD, 192), (Quality.SUSPECT, 0),
                                          (Quality.BAD, 0)])
def test_tck_id_payloads_propertyset_quality_value_type_and_value(quality, code):
    """Quality: an Int32 of 0, 192 or 500; the agent's own word rides in agentQuality."""
    session, _ = born()
    message = session.device_data(Sample("gc-1", T0, (
        reading("benzene", 0.5, quality, None if quality is Quality.GOOD else "calibrating"),)),
        T0)
    properties = props(decoded(message).metrics[0])
    assert properties["Quality"].type == tahu.Int32
    assert properties["Quality"].int_value == code
    assert properties["Quality"].int_value in (0, 192, 500)
    assert properties["agentQuality"].string_value == quality.value


def test_tck_id_payloads_name_birth_data_requirement_timestamps_are_acquired_at():
    """Each metric's timestamp is its reading's acquired_at; the payload's is the send
    time; a GC's analysis time is the analysisTime (DateTime) property."""
    session, _ = born()
    analysis = T0 - timedelta(minutes=4)
    sent_at = T0 + timedelta(seconds=2)
    ddata = decoded(session.device_data(gc_sample(analysis=analysis), sent_at))
    assert ddata.timestamp == T0_MS + 2000
    for metric in ddata.metrics:
        assert metric.timestamp == T0_MS
        assert props(metric)["analysisTime"].type == tahu.DateTime
        assert props(metric)["analysisTime"].long_value == T0_MS - 240000


def test_ddata_reports_only_what_changed():
    session, _ = born()
    assert session.device_data(gc_sample(), T0) is not None
    assert session.device_data(gc_sample(), T0) is None  # nothing changed
    only = decoded(session.device_data(gc_sample(toluene=2.0), T0))
    assert [m.alias for m in only.metrics] == [session.alias_of("gc-1", "toluene")]
    assert len(only.metrics[0].properties.keys) == 0  # quality and reason unchanged
    bad = decoded(session.device_data(Sample("gc-1", T0, (
        reading("toluene", None, Quality.BAD, "timeout"),)), T0))
    assert bad.metrics[0].is_null
    assert props(bad.metrics[0])["Quality"].int_value == 0  # the quality changed: sent
    assert props(bad.metrics[0])["reason"].string_value == "timeout"


def test_historical_ddata_flags_every_metric_and_leaves_the_live_view_alone():
    """Backlog: is_historical on each metric, all readings sent, nothing remembered."""
    session, _ = born()
    session.device_data(gc_sample(), T0)
    old = decoded(session.device_data(gc_sample(), T0 - timedelta(hours=1), historical=True))
    assert [m.is_historical for m in old.metrics] == [True, True]
    assert props(old.metrics[0])["Quality"].int_value == 192
    assert session.device_data(gc_sample(), T0) is None  # the live view did not move
    live = decoded(session.device_data(gc_sample(benzene=9.0), T0))
    assert not any(m.HasField("is_historical") for m in live.metrics)


def test_tck_id_payloads_ddeath_seq():
    session, births = born()
    death = decoded(session.device_death("sensors", T0))
    assert death.HasField("seq") and death.seq == 3 and death.timestamp == T0_MS
    assert len(death.metrics) == 0
