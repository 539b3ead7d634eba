"""What a Sparkplug edge node publishes about: the station as an edge node, its devices
and their channels, each channel a metric. Built by the uplink from the station file;
frozen, so a birth certificate cannot change under a session."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.sparkplug.datatypes import channel_datatype
from edge_agent.sparkplug.topics import check_id


@dataclass(frozen=True)
class ChannelSpec:
    """One channel as a metric: its name, the agent's type word (``float32``, ``int16``,
    ``bool``, ``string``, ``number``...), its engineering unit, and whether scale/offset
    make an integer register a fraction (then the metric is a Double)."""

    name: str
    type_word: str
    unit: str = ""
    scaled: bool = False

    @property
    def datatype(self) -> int:
        return channel_datatype(self.type_word, self.scaled)


@dataclass(frozen=True)
class DeviceSpec:
    """One device: a Sparkplug device of the edge node, one metric per channel."""

    device_id: str
    channels: tuple[ChannelSpec, ...]

    def __post_init__(self) -> None:
        check_id("device id", self.device_id)
        names = [channel.name for channel in self.channels]
        if len(set(names)) != len(names):
            raise ValueError(f"device {self.device_id}: a channel name is repeated")
        for channel in self.channels:
            channel_datatype(channel.type_word)  # an unknown type word is refused here


@dataclass(frozen=True)
class EdgeNodeSpec:
    """The station as an edge node. ``properties`` become String node metrics under
    ``Properties/`` in NBIRTH (the station's id and name, for instance)."""

    group: str
    edge_node: str
    agent_version: str
    devices: tuple[DeviceSpec, ...]
    properties: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        check_id("group id", self.group)
        check_id("edge node id", self.edge_node)
        ids = [device.device_id for device in self.devices]
        if len(set(ids)) != len(ids):
            raise ValueError(f"edge node {self.edge_node}: a device id is repeated")

    def device(self, device_id: str) -> DeviceSpec:
        """The device of that id; KeyError naming it otherwise."""
        for device in self.devices:
            if device.device_id == device_id:
                return device
        raise KeyError(f"edge node {self.edge_node} has no device {device_id!r}")
