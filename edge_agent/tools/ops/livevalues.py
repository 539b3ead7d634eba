"""The running agent's last values and wire counters, as ``edge-agent status`` prints them.

Separate from status.py because these lines are the technician's comparison with the
instrument's own display: one row per channel (value, unit, quality, reason, when read),
and one line per device of what went over the wire since the agent started.
"""

from __future__ import annotations

from typing import Any

from edge_agent.tools.ops.text import duration, parse_iso, plural, table

#: counter key -> (singular, plural) as printed; the order of the line.
COUNTERS = (("requests", "request", "requests"), ("answers", "answer", "answers"),
            ("timeouts", "timeout", "timeouts"), ("exceptions", "exception", "exceptions"),
            ("split_reads", "split read", "split reads"))


def agent_and_devices_lines(doc: dict[str, Any]) -> list[str]:
    """The agent's own health apart from its devices': a dead device is not a sick agent,
    and a healthy agent with every device down must not read as 'all fine'."""
    agent = "Agent:    OK (worker threads alive, outbox answering)" if doc["healthy"] \
        else "Agent:    PROBLEM: " + "; ".join(doc["problems"])
    devices = doc["devices"]
    bad = [f"{d['id']} {d['state'].upper()}" for d in devices if d["state"] != "ok"]
    if not devices:
        state = "Devices:  none configured"
    elif bad:
        state = f"Devices:  {len(bad)} of {len(devices)} not ok: {', '.join(bad)}"
    else:
        state = f"Devices:  all {len(devices)} ok"
    return [agent, state]


def value_lines(doc: dict[str, Any], now: float) -> list[str]:
    """Each channel's last reading; empty when no device has been polled yet."""
    rows = [[device["id"], v["channel"], shown_value(v["value"]), printable(v["unit"]),
             v["quality"], printable(v["reason"] or "-"), _age(v["acquired_at"], now)]
            for device in doc["devices"] for v in device.get("values") or []]
    if not rows:
        return []
    header = ["DEVICE", "CHANNEL", "VALUE", "UNIT", "QUALITY", "REASON", "READ"]
    return ["Last values:", *("  " + line for line in table(header, rows))]


def counter_lines(doc: dict[str, Any]) -> list[str]:
    """'  det-ok: 120 requests, 118 answers, 2 timeouts, 0 exceptions, 0 split reads'."""
    lines = []
    for device in doc["devices"]:
        counters = device.get("counters")
        if not counters:
            continue
        parts = [plural(counters.get(key, 0), one, many) for key, one, many in COUNTERS]
        lines.append(f"  {device['id']}: {', '.join(parts)} since start")
    return ["Wire:", *lines] if lines else []


def shown_value(value: object) -> str:
    """Floats to 6 significant digits, booleans as the instrument shows them, text safe."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "ON" if value else "OFF"
    if isinstance(value, float):
        return f"{value:.6g}"
    return printable(str(value))


def printable(text: str) -> str:
    """Device-supplied text for a terminal: control characters (an escape sequence could
    rewrite the screen) are shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _age(at_text: str | None, now: float) -> str:
    at = parse_iso(at_text)
    return f"{duration(now - at)} ago" if at is not None else "-"
