"""Which shipped profile a ``--find`` match belongs to: a reading found at an address, with
a type, word order and scale that a shipped profile's channel has, says that the
instrument is (or is mapped like) that profile's model, so the technician can write
``profile: NAME`` instead of a channel list.

Each shipped Modbus profile (drivers/*/profile.yaml, drivers/*/profiles/*.yaml) is read
by the station loader itself, as a one-device station file in a temporary folder, so
its channels come out exactly as a station would get them (defaults, the profile's
word order). Only channels with a unit count: a status word or a clock field at a
common address says nothing about the model. Enron 32-bit channels are left out: probe
reads 16-bit registers.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge_agent_drivers.modbus.settings import Channel, ModbusSettings, RegisterKind

from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.config.profiles import ProfileLibrary, shipped_profile_dirs
from edge_agent.tools.probe.interpret import Match

# Technician-facing text of this module, in one place.
LOOKS_LIKE = "looks like profile {profile}, channel '{channel}' (profile: {profile})"


@dataclass(frozen=True)
class ProfileChannel:
    """One measured channel of a shipped profile."""

    profile: str
    channel: Channel


def shipped_channels() -> list[ProfileChannel]:
    """The measured channels of every shipped Modbus profile, in profile-name order."""
    names = sorted(ProfileLibrary(Path.cwd(), shipped_profile_dirs()).shipped())
    found: list[ProfileChannel] = []
    with tempfile.TemporaryDirectory(prefix="edge-agent-probe-") as folder:
        for name in names:
            settings = _settings_of(name, Path(folder))
            if settings is None:
                continue
            found += [ProfileChannel(name, channel) for channel in settings.channels
                      if channel.unit and not channel.enron]
    return found


def _settings_of(profile: str, folder: Path) -> ModbusSettings | None:
    """The profile's settings as a station device gets them; None for a profile that is
    not a Modbus map (a text protocol) or does not load."""
    station = folder / f"{profile}.yaml"
    station.write_text(json.dumps({
        "station": {"id": "probe"},
        "links": {"lan": {"type": "tcp", "host": "127.0.0.1"}},
        "devices": [{"id": "d", "link": "lan", "unit_id": 1, "profile": profile}],
        "store": {"path": str(folder / "outbox.sqlite3")},
        "mqtt": {"host": "127.0.0.1"}}))
    try:
        settings = load_config(station, env={}, for_agent=False).devices[0].settings
    except ConfigError:
        return None
    return settings if isinstance(settings, ModbusSettings) else None


def profile_hints(kind: RegisterKind, match: Match,
                  channels: list[ProfileChannel]) -> list[str]:
    """What ``match`` (read from table ``kind``) looks like among ``channels``."""
    return [LOOKS_LIKE.format(profile=known.profile, channel=known.channel.name)
            for known in channels if _same_reading(kind, match, known.channel)]


def _same_reading(kind: RegisterKind, match: Match, channel: Channel) -> bool:
    return (channel.register is kind and channel.address == match.address
            and channel.data_type.value in match.type_name.split("|")
            and (match.order is None or channel.word_order is match.order)
            and channel.offset == 0
            and abs(channel.scale * match.divisor - 1) < 1e-9)
