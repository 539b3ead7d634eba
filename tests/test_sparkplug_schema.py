"""Our sparkplug_b.proto is the specification's payload definition, and the checked-in
generated module is what that .proto compiles to."""

from __future__ import annotations

import types
from importlib.machinery import SourceFileLoader
from pathlib import Path

from esio_spb_builder.core import sparkplug_b_pb2 as tahu
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from edge_agent.sparkplug import sparkplug_b_pb2 as ours

ROOT = Path(__file__).resolve().parent.parent
PROTO = "edge_agent/sparkplug/sparkplug_b.proto"


def _compiled(tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    out = tmp_path / "set.pb"
    assert protoc.main(["protoc", f"-I{ROOT}", f"--descriptor_set_out={out}",
                        str(ROOT / PROTO)]) == 0
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]


def _without_json_names(message) -> None:
    """protoc's descriptor set names each field's JSON form; the Python module's
    embedded descriptor leaves those out. Neither is part of the schema."""
    for field in message.field:
        field.ClearField("json_name")
    for nested in message.nested_type:
        _without_json_names(nested)


def test_checked_in_module_is_what_the_proto_compiles_to(tmp_path):
    """Fails when sparkplug_b.proto was edited and scripts/sparkplug-proto not run."""
    checked_in = descriptor_pb2.FileDescriptorProto.FromString(ours.DESCRIPTOR.serialized_pb)
    compiled = _compiled(tmp_path)
    for message in compiled.message_type:
        _without_json_names(message)
    assert compiled == checked_in


def test_the_regenerate_script_reproduces_the_checked_in_module(tmp_path):
    """scripts/sparkplug-proto, run in this process (its main), writes what is checked in."""
    loader = SourceFileLoader("sparkplug_proto", str(ROOT / "scripts" / "sparkplug-proto"))
    script = types.ModuleType(loader.name)
    script.__file__ = loader.path
    loader.exec_module(script)
    assert script.main([str(tmp_path)]) == 0
    generated = tmp_path / "edge_agent" / "sparkplug" / "sparkplug_b_pb2.py"
    assert generated.read_text() == (ROOT / "edge_agent/sparkplug/sparkplug_b_pb2.py").read_text()


def _fields(descriptor) -> list[tuple]:
    """name, number, label, type, oneof and message type (package left off) of each field."""
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    return [(f.name, f.number, f.label, f.type,
             f.oneof_index if f.HasField("oneof_index") else None,
             f.type_name.rsplit("Payload.", 1)[-1] if f.type_name else None)
            for f in proto.field]


def _messages(descriptor, prefix: str = "") -> dict[str, object]:
    found = {}
    for nested in descriptor.nested_types:
        found[prefix + nested.name] = nested
        found.update(_messages(nested, prefix + nested.name + "."))
    return found


def test_every_field_number_and_type_is_tahus():
    """Message by message, field by field: number, wire type, label, oneof, and the
    extension ranges, against the classes generated from Eclipse Tahu's own .proto."""
    theirs = {"Payload": tahu.Payload.DESCRIPTOR, **_messages(tahu.Payload.DESCRIPTOR, "Payload.")}
    mine = {"Payload": ours.Payload.DESCRIPTOR, **_messages(ours.Payload.DESCRIPTOR, "Payload.")}
    assert sorted(mine) == sorted(theirs)
    assert sum(len(_fields(d)) for d in theirs.values()) > 60  # the whole schema compared
    for name, descriptor in theirs.items():
        assert _fields(mine[name]) == _fields(descriptor), name
        theirs_proto = descriptor_pb2.DescriptorProto()
        mine_proto = descriptor_pb2.DescriptorProto()
        descriptor.CopyToProto(theirs_proto)
        mine[name].CopyToProto(mine_proto)
        assert list(mine_proto.extension_range) == list(theirs_proto.extension_range), name
    assert ({v.name: v.number for v in ours.DataType.DESCRIPTOR.values}
            == {v.name: v.number for v in tahu.DataType.DESCRIPTOR.values})


def test_the_schema_is_proto2_like_the_specifications():
    """proto2: every scalar has presence, so seq 0 is sent and an absent seq (NDEATH) is
    told apart from 0."""
    checked_in = descriptor_pb2.FileDescriptorProto()
    ours.DESCRIPTOR.CopyToProto(checked_in)
    assert checked_in.syntax in ("", "proto2")
    assert ours.Payload(seq=0).HasField("seq")
