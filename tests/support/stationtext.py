"""The one-GC station as YAML text, the way a technician writes it.

The config tests and ``tests/config_cases/make_binary_cases.py`` build their station
files from these pieces, so the lines they share are written once. Expected errors name
line numbers: a piece that gains or loses a line moves them all.
"""

from __future__ import annotations

HEAD = """\
station:
  id: ST01
links:
  plc-gw:
    type: tcp
    host: 192.168.1.10
"""
# The same link as one flow mapping.
HEAD_FLOW = """\
station:
  id: ST01
links:
  plc-gw: {type: tcp, host: 192.168.1.10}
"""
GC_1 = """\
devices:
  - id: gc-1
    link: plc-gw
    unit_id: 1
    interval_s: 60
    channels:
"""
BROKER = "mqtt:\n  host: broker.local\n"


def one_gc(*channels: str, head: str = HEAD, tail: str = BROKER) -> str:
    """``head``, device gc-1 with ``channels`` (each a flow mapping on its own line), then
    ``tail``."""
    return head + GC_1 + "".join(f"      - {channel}\n" for channel in channels) + tail
