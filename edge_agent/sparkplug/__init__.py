"""Sparkplug B 3.0: the payload layer a Sparkplug uplink stands on (docs/sparkplug.md).

Pure parts only, no MQTT: the schema's generated classes (``sparkplug_b_pb2``, from
``sparkplug_b.proto``), the topic namespace (``topics``), the channel type and quality
mappings (``datatypes``, ``quality``), the encoding of births, data and deaths from the
agent's model (``metrics``, ``session``: seq, bdSeq and aliases as a state machine that
an uplink drives), the bdSeq file (``bdseq``), NCMD decoding (``commands``) and the
primary host's STATE (``state``). ``decode`` reads a payload back into plain values
(the host simulator, edge_agent/tools/sparkplughost/, prints through it).
"""
