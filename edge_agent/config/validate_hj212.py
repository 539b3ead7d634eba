"""An HJ 212 uplink's settings (``uplinks.NAME`` with ``kind: hj212``; docs/hj212.md).

Read as declared on ``Hj212Config`` (config/schema.py); the rules written here are the
ones tying settings together or to the standard: the MN's length per version (2025: 24
characters 0-9/A-F, the platform assigns it; 2017: up to 24 letters and digits, the
field's width, since 14-character MNs are common on 2017 platforms), ST as two digits,
the password (PW is 6 characters wide) and the SM4 key from the secrets like the MQTT
password, encryption only under 2025, the station's own ``codes:`` beside the shipped
table, and each channel's code: known, of this version, not twice on one platform.
Whether each channel exists on its device is checked with the devices
(``check_hj212_channels``), once every section is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from edge_agent.config.declare import declared, filled, read_declared
from edge_agent.config.errors import ConfigIssue
from edge_agent.config.fields import Checker, Section, found
from edge_agent.config.schema import (
    Device,
    Hj212Channel,
    Hj212Config,
    Secret,
    StandInSecret,
    UplinkConfig,
)
from edge_agent.config.validate_mqtt import _password_from_env, _password_from_file, _read_file
from edge_agent.config.yamlsource import MapNode, ScalarNode, SeqNode
from edge_agent.hj212.codes import CodeTable, PollutantCode, _one_code, merge, shipped_table
from edge_agent.hj212.sm4 import key_from_text
from edge_agent.i18n import _

RTD_INTERVAL_MIN_S = 30  # HJ 212-2017 Table 4, RtdInterval 30..3600 s
_MN_2025 = re.compile(r"[0-9A-F]{24}")
_MN_2017 = re.compile(r"[A-Za-z0-9]{1,24}")
_ST = re.compile(r"\d{2}")
_PW = re.compile(r"[A-Za-z0-9]{1,6}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN = ("host", "port", "ack", "timeout_s", "retries", "realtime_interval_s",
          "minute_interval_min", "hourly", "daily", "heartbeat_s", "allow_set_clock", "crc")


def read_hj212_settings(sec: Section, env: Mapping[str, str], base: Path) -> Hj212Config:
    """The settings of one HJ 212 uplink; values reported as wrong become defaults (the
    loader raises before they are used)."""
    values = {name: read_declared(sec, Hj212Config, name) for name in _PLAIN}
    version = read_declared(sec, Hj212Config, "version")
    mn = _read_mn(sec, version)
    st = read_declared(sec, Hj212Config, "st")
    if st is not None and not _ST.fullmatch(st):
        sec.report("st", _("'{value}': expected the system code as two digits, such as 22 "
                           "(air quality) or 31 (air pollution source)").format(value=st))
    encrypt = read_declared(sec, Hj212Config, "encrypt")
    if encrypt is None:
        encrypt = version == 2025
    elif encrypt and version == 2017:
        sec.report("encrypt", _("HJ 212-2017 has no encryption; remove encrypt or set "
                                "version: 2025"))
    if version == 2017 and sec.has("heartbeat_s") and values["heartbeat_s"]:
        sec.warn("heartbeat_s", _("HJ 212-2017 has no heartbeat (CN 9015 is 2025's): none "
                                  "is sent"))
    interval = values["realtime_interval_s"]
    if interval is not None and 0 < interval < RTD_INTERVAL_MIN_S:
        sec.report("realtime_interval_s", _(
            "{value} s: HJ 212's real-time interval (RtdInterval) is 30 to 3600 s; "
            "or 0 to send every sample").format(value=interval))
    table = _read_codes(sec)
    return Hj212Config(**filled(Hj212Config, {
        **values, "version": version, "mn": mn or "", "st": st or "",
        "password": _read_password(sec, env, base), "encrypt": encrypt,
        "sm4_key": _read_key(sec, env, base) if encrypt and version != 2017 else None,
        "channels": _read_channels(sec, table, version or 2025),
        "codes": tuple(code for code in table.values()
                       if not code.where.startswith("edge_agent/hj212/")),
    }))


def _read_mn(sec: Section, version: int | None) -> str | None:
    mn = read_declared(sec, Hj212Config, "mn")
    if mn is None:
        return None
    if version == 2017 and not _MN_2017.fullmatch(mn):
        sec.report("mn", _("'{value}': HJ 212-2017 allows 1 to 24 letters and digits").format(
            value=mn))
    elif version != 2017 and not _MN_2025.fullmatch(mn):
        sec.report("mn", _("'{value}' is {count} characters: HJ 212-2025 expects the 24 "
                           "characters 0-9 and A-F the platform assigned").format(
                               value=mn, count=len(mn)))
    return mn


def _read_password(sec: Section, env: Mapping[str, str], base: Path) -> Secret | None:
    """PW, from password_env or password_file; required (every packet carries it)."""
    name = sec.text("password_env", None)
    file_given = sec.text("password_file", None) is not None
    if name is not None and file_given:
        sec.report("password_file", _("give either password_env or password_file, not both"),
                   at_key=True)
        return None
    if name is not None:
        key, value = "password_env", _password_from_env(sec, name, env)
    elif file_given:
        key, value = "password_file", _password_from_file(sec, base)
    else:
        sec.missing("password_env", _("the platform's access password PW: password_env (or "
                                      "password_file)"))
        return None
    if value is not None and not isinstance(value, StandInSecret) \
            and not _PW.fullmatch(value):
        sec.report(key, _("the password must be 1 to 6 letters or digits (the PW field is "
                          "6 characters wide)"))
    return None if value is None else Secret(value)


def _read_key(sec: Section, env: Mapping[str, str], base: Path) -> Secret | None:
    """The SM4 key: 32 hex digits, or the 16 characters the platform gave."""
    name = sec.text("sm4_key_env", None)
    file_given = sec.text("sm4_key_file", None) is not None
    if name is not None and file_given:
        sec.report("sm4_key_file", _("give either sm4_key_env or sm4_key_file, not both"),
                   at_key=True)
        return None
    key = "sm4_key_env" if name is not None else "sm4_key_file"
    text: str | None = None
    if name is not None:
        if not _ENV_NAME.fullmatch(name):
            sec.report(key, _("expected the NAME of an environment variable (letters, digits "
                              "and _), not the key itself"))
            return None
        text = env.get(name)
        if not text:
            sec.report(key, _("environment variable '{name}' is not set or empty").format(
                name=name))
            return None
    elif file_given:
        read = _read_file(sec, key, base)
        if read is None:
            return None
        text = read[1].decode("utf-8", "replace").strip()
    else:
        sec.missing("sm4_key_env", _("the SM4 key HJ 212-2025 encrypts with: sm4_key_env (or "
                                     "sm4_key_file); or encrypt: false if the platform takes "
                                     "plain data"))
        return None
    if not isinstance(text, StandInSecret) and key_from_text(text) is None:
        if len(text) == 32:  # the right length, so the length is not what to fix
            sec.report(key, _("the SM4 key must be 32 hex digits or 16 characters: it is "
                              "32 characters, but not all of them are hex digits (0-9, A-F)"))
        else:
            sec.report(key, _("the SM4 key must be 32 hex digits or 16 characters "
                              "(it is {count} characters)").format(count=len(text)))
        return None
    return Secret(text)


def _read_codes(sec: Section) -> CodeTable:
    """The shipped table with the station's ``codes:`` added."""
    table = shipped_table()
    entry = sec.node.get("codes")
    if entry is None or (isinstance(entry.value, ScalarNode) and entry.value.value is None):
        return table
    if not isinstance(entry.value, MapNode):
        sec.report("codes", _("expected {expected}, found {found}").format(
            expected=declared(Hj212Config)["codes"].expected(), found=found(entry.value)))
        return table
    issues: list[ConfigIssue] = []
    added: list[PollutantCode] = []
    for item in entry.value.entries:
        path = f"{sec.path_of('codes')}.{item.key}"
        shipped = table.get(item.key)
        if shipped is not None:
            sec.ck.report(item.line, path, _(
                "{code} ships in the code table ({name}, {unit}): use it as it is, or give "
                "your own code another name").format(code=item.key, name=shipped.name_en,
                                                     unit=shipped.unit))
            continue
        code = _one_code(item.key, item.line, item.value, sec.ck.file, path, issues)
        if code is not None:
            added.append(code)
    for issue in issues:
        sec.ck.report(issue.line, issue.path, issue.message)
    return merge(table, added)


def _read_channels(sec: Section, table: CodeTable, version: int) -> tuple[Hj212Channel, ...]:
    entry = sec.node.get("channels")
    if entry is None or not isinstance(entry.value, SeqNode) or not entry.value.items:
        sec.missing("channels", _("the channels this platform receives: a list of "
                                  "{device: gc-1, channel: benzene, code: a25002} items"))
        return ()
    keys = ("device", "channel", "code", "unit")
    channels: list[Hj212Channel] = []
    seen: dict[str, int] = {}
    for index, node in enumerate(entry.value.items):
        path = f"{sec.path_of('channels')}[{index}]"
        if not isinstance(node, MapNode):
            sec.ck.report(node.line, path, _("expected {expected}, found {found}").format(
                expected=declared(Hj212Config)["channels"].expected(), found=found(node)))
            continue
        item = Section(sec.ck, node, path, node.line, keys)
        values = {name: read_declared(item, Hj212Channel, name) for name in keys}
        code = values["code"]
        if code is None:
            continue
        known = table.get(code)
        if known is None:
            item.report("code", _("{code} is not in the shipped code table: declare it under "
                                  "{codes} with the unit the platform expects").format(
                                      code=code, codes=sec.path_of("codes")))
        elif version not in known.versions:
            item.report("code", _("{code} ({name}) is not an HJ 212-{version} code").format(
                code=code, name=known.name_en, version=version))
        elif values["unit"] and values["unit"] != known.unit:
            item.warn("unit", _("{code} is sent in {unit}, not in the code table's {table}: "
                                "make sure the platform expects {unit}").format(
                                    code=code, unit=values["unit"], table=known.unit))
        if code in seen:
            item.report("code", _("{code} is already sent by channels[{index}]: a platform "
                                  "takes each code once").format(code=code, index=seen[code]))
        else:
            seen[code] = index
        channels.append(Hj212Channel(**filled(Hj212Channel, values)))
    return tuple(channels)


def check_hj212_channels(ck: Checker, sections: Mapping[str, Section],
                         uplinks: Sequence[UplinkConfig], devices: Sequence[Device]) -> None:
    """Each channel of each HJ 212 uplink names a device the uplink carries and one of
    that device's channels (read from the items as written, so a line is always known)."""
    if not any(uplink.hj212 is not None for uplink in uplinks):
        return
    channels = {device.id: _channel_names(device) for device in devices}
    for uplink in uplinks:
        sec = sections.get(uplink.name)
        entry = sec.node.get("channels") if sec is not None else None
        if uplink.hj212 is None or sec is None or entry is None \
                or not isinstance(entry.value, SeqNode):
            continue
        for index, node in enumerate(entry.value.items):
            device, channel = _text_of(node, "device"), _text_of(node, "channel")
            path = f"{sec.path_of('channels')}[{index}]"
            if device is None or channel is None:
                continue  # reported when the item was read
            if device not in channels:
                ck.report(node.line, f"{path}.device", _(
                    "there is no device '{name}' under devices: (known: {known})").format(
                        name=device, known=", ".join(channels)))
            elif not uplink.carries(device):
                ck.report(node.line, f"{path}.device", _(
                    "'{name}' is not in this uplink's devices list").format(name=device))
            elif channel not in channels[device]:
                ck.report(node.line, f"{path}.channel", _(
                    "device '{device}' has no channel '{name}' (known: {known})").format(
                        device=device, name=channel, known=", ".join(sorted(channels[device]))))


def _channel_names(device: Device) -> set[str]:
    """The channel names a device's readings carry (a serial-text device keeps its
    channels with its record format)."""
    settings = device.settings
    found = getattr(settings, "channels", None)
    if found is None:
        found = getattr(getattr(settings, "record", None), "channels", ())
    return {channel.name for channel in found}


def _text_of(node: object, key: str) -> str | None:
    entry = node.get(key) if isinstance(node, MapNode) else None
    return entry.value.text if entry is not None and isinstance(entry.value, ScalarNode) \
        else None
