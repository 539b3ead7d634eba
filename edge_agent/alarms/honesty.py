"""Why an alarm cannot be confirmed: the reading's own quality and reason, the device.

A false alarm costs a plant a phone call and trust; a dropped alarm can cost lives. So
an alarm whose triggering reading is SUSPECT or BAD, or whose device is not answering
reliably, is raised all the same, as *unconfirmed*, with the reason in words an
operator understands. The reason words come from the value pipeline and the profile's
status mapping (edge_agent/values.py, ``quality_bits`` / ``quality_values``).
"""

from __future__ import annotations

from edge_agent.model import Quality, Reading

# A quality reason word (docs/architecture.md, "Quality") -> what an operator reads.
REASON_WORDS = {
    "fault": "sensor fault suspected",
    "calibrating": "calibrating",
    "maintenance": "maintenance",
    "warmup": "warming up",
    "out_of_range": "value outside the plausible range",
    "sentinel": "sensor loop broken",
    "timeout": "no answer from the device",
    "no_connection": "no connection to the device",
}
DEVICE_UNRELIABLE = "device not answering reliably"


def doubt(reading: Reading | None, device_ok: bool) -> str | None:
    """Why an alarm on ``reading`` is not confirmed, or None when it is trustworthy
    (GOOD quality from a device that answers). Several causes are joined with '; '."""
    causes: list[str] = []
    if reading is not None and reading.quality is not Quality.GOOD:
        words = (reading.reason or "").split("+")
        causes += [REASON_WORDS.get(word, f"{reading.quality.value.lower()} reading"
                                    + (f" ({word})" if word else "")) for word in words]
    if not device_ok:
        causes.append(DEVICE_UNRELIABLE)
    return "; ".join(dict.fromkeys(causes)) or None
