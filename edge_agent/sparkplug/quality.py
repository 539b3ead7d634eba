"""The agent's quality as Sparkplug's ``Quality`` property.

Sparkplug 3.0 defines one quality property: key ``Quality``, type Int32
(tck-id-payloads-propertyset-quality-value-type), value 0 (BAD), 192 (GOOD) or 500 (STALE)
(tck-id-payloads-propertyset-quality-value-value). The agent has three qualities; SUSPECT
has no code of its own there, so it is sent as 0: a host must not take a value read during
calibration or maintenance for a good one. The agent's own word travels beside it in the
``agentQuality`` property and the reason in ``reason`` (docs/sparkplug.md), so nothing is
lost for a host that reads properties.
"""

from __future__ import annotations

from edge_agent.model import Quality

GOOD = 192
BAD = 0
STALE = 500
SPEC_CODES = frozenset({BAD, GOOD, STALE})

QUALITY_KEY = "Quality"
AGENT_QUALITY_KEY = "agentQuality"
REASON_KEY = "reason"

_CODES = {Quality.GOOD: GOOD, Quality.SUSPECT: BAD, Quality.BAD: BAD}


def quality_code(quality: Quality) -> int:
    """The value of the ``Quality`` property for a reading of this quality."""
    return _CODES[quality]
