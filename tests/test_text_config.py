"""The text: block as the loader reads it: defaults, escapes and addresses in requests,
framed requests, the reference file, and no traceback whatever one line says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from edge_agent_drivers.serialtext import config_record as validate_text_record
from edge_agent_drivers.serialtext import config_text as validate_text
from edge_agent_drivers.serialtext.protocol.checksums import ChecksumKind
from edge_agent_drivers.serialtext.protocol.settings import (
    Covers,
    Framing,
    FramingKind,
    TextMode,
    TextSettings,
)

from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config

REFERENCE = Path(__file__).resolve().parent.parent / "config" / "reference.yaml"
STATION = """\
station: {{id: ST01}}
links:
  rs232: {{type: serial, port: /dev/ttyS0, protocol: text}}
devices:
  - id: ana-1
    link: rs232
    driver: serial-text
    interval_s: 10
{extra}    text:
{text}
mqtt: {{host: broker.local}}
"""
MINIMAL_TEXT = """\
      request: "RD<CR>"
      delimiter: ","
      channels: [{name: so2, field: 2, unit: ppb}]"""


def load_text(tmp_path: Path, text: str = MINIMAL_TEXT, extra: str = ""):
    path = tmp_path / "station.yaml"
    path.write_text(STATION.format(text=text, extra=extra), encoding="utf-8")
    return load_config(path, env={}).devices[0]


def test_minimal_text_block_gets_the_documented_defaults(tmp_path):
    device = load_text(tmp_path)
    settings = device.settings
    assert settings.mode is TextMode.REQUEST
    assert settings.framing == Framing(FramingKind.LINE, b"", b"", b"", 4096)
    assert settings.checksum is None and settings.address is None
    assert settings.request == b"RD\r"
    record = settings.record
    assert (record.delimiter, record.pattern, record.field_count, record.accept,
            record.time, record.status) == (",", None, None, None, None, ())
    assert isinstance(settings, TextSettings) and device.unit_id == 0


@pytest.mark.parametrize("written", ['"RD\\r"', "'RD\\r'", "RD\\r", "RD<CR>", '"RD<cr>"',
                                     '"RD\\x0D"'])
def test_request_bytes_are_the_same_however_the_cr_is_written(tmp_path, written):
    text = MINIMAL_TEXT.replace('"RD<CR>"', written)
    assert load_text(tmp_path, text).settings.request == b"RD\r"


def test_address_is_put_into_the_request(tmp_path):
    text = MINIMAL_TEXT.replace('"RD<CR>"', '"#{address:02d}RD<CR>"')
    device = load_text(tmp_path, text, extra="    unit_id: 7\n")
    assert (device.unit_id, device.settings.address, device.settings.request) == (7, 7, b"#07RD\r")


@pytest.mark.parametrize(("placeholder", "sent"), [
    ("{address}", b"171"), ("{address:d}", b"171"), ("{address:02d}", b"171"),
    ("{address:08d}", b"00000171"), ("{address:5d}", b"  171"), ("{address:x}", b"ab"),
    ("{address:X}", b"AB"), ("{address:04X}", b"00AB")])
def test_every_accepted_address_format_is_sent_as_python_formats_it(tmp_path, placeholder,
                                                                     sent):
    """The formats the loader accepts (the rest are refused: config case
    text_request_address_format_not_allowed) all reach the wire."""
    text = MINIMAL_TEXT.replace('"RD<CR>"', f'"#{placeholder}RD<CR>"')
    device = load_text(tmp_path, text, extra="    unit_id: 171\n")
    assert device.settings.request == b"#" + sent + b"RD\r"


def test_framed_request_carries_markers_and_checksum(tmp_path):
    text = MINIMAL_TEXT.replace('"RD<CR>"', "DA") + (
        "\n      frame_request: true\n      framing: stx-etx"
        "\n      checksum: {type: crc16-ccitt-false, covers: start+body+end}")
    settings = load_text(tmp_path, text).settings
    assert settings.checksum.kind is ChecksumKind.CRC16_CCITT_FALSE
    assert settings.checksum.covers is Covers.START_BODY_END
    crc = 0xFFFF  # CRC-16/CCITT-FALSE of STX 'D' 'A' ETX, written out here
    for byte in b"\x02DA\x03":
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    assert settings.request == b"\x02DA\x03" + b"%04X" % crc


def test_shorthand_framing_and_checksum_take_their_defaults(tmp_path):
    text = MINIMAL_TEXT + "\n      framing: stx-etx\n      checksum: lrc8"
    settings = load_text(tmp_path, text).settings
    assert (settings.framing.start, settings.framing.end) == (b"\x02", b"\x03")
    assert settings.checksum.kind is ChecksumKind.LRC8


TEXT_SECTIONS = {
    "text": validate_text.TEXT_KEYS,
    "framing": validate_text.FRAMING_KEYS,
    "checksum": validate_text.CHECKSUM_KEYS,
    "time": validate_text_record.TIME_KEYS,
    "status": validate_text_record.STATUS_KEYS,
    "channel": validate_text_record.CHANNEL_KEYS,
}


@pytest.mark.parametrize("section", TEXT_SECTIONS)
def test_reference_mentions_every_text_setting(section):
    text = REFERENCE.read_text(encoding="utf-8")
    start = text.index("# text:")
    block = text[start:text.index("\npolling:", start)]
    for key in TEXT_SECTIONS[section]:
        assert re.search(rf"[ #{{,](- )?{key}:", block), f"{section}: {key}"


EVERY_TEXT_SETTING = """\
      mode: request
      request: "<STX>DA{address:02d}<ETX>"
      frame_request: false
      framing:
        type: stx-etx
        start: <STX>
        end: <ETX>
        max_bytes: 512
      checksum:
        type: crc16-modbus
        encoding: hex
        byte_order: little
        covers: body+end
      accept: '^MD'
      delimiter: ","
      field_count: 8
      time:
        field: [2, 3]
        format: "%Y-%m-%d %H:%M:%S"
        utc_offset: "+08:00"
      status:
        field: 8
        values:
          A: GOOD
          C: SUSPECT calibrating
          F: {quality: BAD, reason: fault}
        otherwise: SUSPECT unknown_status
        channels: [no]
      channels:
        - name: no
          field: 4
          scale: 1.0
          offset: 0.0
          unit: ppb"""
ODD_VALUES = ("", "true", "[1, 2]", "{a: 1}", "-1", "0", "1e400", "'('", "<STX>", "x\\q")
_SETTING = re.compile(r"^(\s*(?:- )?[\w-]+:)(?!\S)")


@pytest.mark.sweep
def test_any_single_line_edit_of_a_text_block_gives_issues_never_a_traceback(tmp_path):
    extra = "    unit_id: 1\n"
    load_text(tmp_path, EVERY_TEXT_SETTING, extra)  # the unedited block is valid
    lines = EVERY_TEXT_SETTING.split("\n")
    variants = [lines[:i] + lines[i + 1:] for i in range(len(lines))]
    for i, line in enumerate(lines):
        if found := _SETTING.match(line):
            variants += [lines[:i] + [f"{found[1]} {odd}"] + lines[i + 1:] for odd in ODD_VALUES]
    for variant in variants:
        try:
            load_text(tmp_path, "\n".join(variant), extra)
        except ConfigError as err:
            assert err.issues and all(issue.message for issue in err.issues)
