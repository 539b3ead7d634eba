"""HJ 212 data flags from the agent's quality and reason (docs/payload.md, "Mapping to
HJ 212 data flags and Sparkplug": that table is the definition, this is its one
implementation).

Flags (HJ 212-2017 Table 8): N normal, F stopped, M maintenance, S manual, D fault,
C calibrating, T over range, B communication failure. A reason joined with ``+``
(``calibrating+maintenance``) maps part by part and the worst flag wins.
"""

from __future__ import annotations

from collections.abc import Mapping

from edge_agent.model import Quality

# Worst first: no value at all (fault, no communication) beats a value taken while the
# instrument was not measuring normally, which beats a value over its range.
SEVERITY = ("D", "B", "F", "C", "M", "S", "T", "N")

_BY_REASON: dict[str, str] = {
    "out_of_range": "T",
    "calibrating": "C",
    "maintenance": "M",
    "warmup": "M",
    "background": "M",
    "unknown_status": "M",
    "fault": "D",
    "instrument_alarm": "D",
    "sentinel": "D",
    "bad_bcd": "D",
    "not_a_number": "D",
    "infinite": "D",
    "no_value": "D",
    "agent_error": "D",
    "timeout": "B",
    "no_connection": "B",
    "bad_response": "B",
    "bad_checksum": "B",
    "bad_frame": "B",
    "flood": "B",
    "trigger_unreadable": "B",
}


def worst(flags: list[str]) -> str:
    """The worst of several flags by ``SEVERITY`` (N for none)."""
    return min(flags, key=SEVERITY.index, default="N")


def flag_for(quality: Quality, reason: str | None,
             profile_flags: Mapping[str, str] | None = None) -> str:
    """The HJ 212 data flag of one reading. ``profile_flags``: flags a station's profile
    gives its own reasons; a reason nobody maps is ``D`` for BAD, ``M`` for SUSPECT."""
    if quality == Quality.GOOD:
        return "N"
    parts = [part for part in (reason or "").split("+") if part]
    found = []
    for part in parts or [""]:
        if profile_flags and part in profile_flags:
            found.append(profile_flags[part])
        elif part in _BY_REASON:
            found.append(_BY_REASON[part])
        elif part.startswith("exception_"):
            found.append("B")
        else:
            found.append("D" if quality == Quality.BAD else "M")
    return worst(found)
