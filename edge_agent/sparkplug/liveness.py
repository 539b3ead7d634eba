"""When a Sparkplug device is dead for the host: the agent's own rule, read from the
samples the uplink sends, in their order.

The poller marks a device down after ``DOWN_AFTER_FAILED_POLLS`` failed polls in a row
(poller.py), and stores a sample for each failed poll: every reading BAD with the link
error's reason (``timeout``, ``no_connection``...), or refused reads (``exception_XX``).
The uplink sees the same samples, so it applies the same rule to them: the sample that
makes the count reach the limit goes out as DDATA and is followed by a DDEATH; the next
sample that is not a failed poll brings the device back with a DBIRTH carrying it.
Reading the samples (not the poller's state) keeps DDEATH and DBIRTH in order with the
device's data, also after a restart or an outage, when the samples are old.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.model import Quality, Sample

DOWN_AFTER_FAILED_POLLS = 3  # poller.DOWN_AFTER_FAILED_POLLS (tests hold them together)
LINK_REASONS = frozenset({"link_error", "no_connection", "timeout", "bad_response", "flood"})


def failed_poll(sample: Sample) -> bool:
    """Whether ``sample`` is what the poller stores for a poll that failed."""
    readings = sample.readings
    if not readings:
        return False
    for reading in readings:
        reason = reading.reason or ""
        if reading.quality is not Quality.BAD or not (
                reason in LINK_REASONS or reason.startswith("exception_")):
            return False
    return True


@dataclass
class DeviceLiveness:
    """Consecutive failed polls per device, and which devices are dead."""

    down_after: int = DOWN_AFTER_FAILED_POLLS
    failures: dict[str, int] = field(default_factory=dict)

    def observe(self, sample: Sample) -> None:
        """Count ``sample`` (in the order the uplink sends samples)."""
        if failed_poll(sample):
            self.failures[sample.device_id] = self.failures.get(sample.device_id, 0) + 1
        else:
            self.failures[sample.device_id] = 0

    def dead(self, device_id: str) -> bool:
        """Whether the device is down: its last ``down_after`` samples were failed polls."""
        return self.failures.get(device_id, 0) >= self.down_after
