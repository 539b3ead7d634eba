"""What ``capture import`` says about packets it could not import, in a technician's words.

Pure: a ``PcapSummary`` in, lines of text out. Every way a frame can be lost on the way
from the file to the capture has a line here: damage to the file (each record with its
packet number and byte offset), a file cut short, interfaces whose link type carries no
IP we read, packets whose headers cannot be read, packets cut by the snap length.
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.tools.capture.pcap_read import PcapSummary

LISTED = 20  # undecodable packets named one by one; more are counted


def warnings(path: Path, summary: PcapSummary) -> list[str]:
    """Losses that leave the rest of the capture sound: the import still succeeds."""
    lines = [f"{path}: {skipped.describe()}" for skipped in summary.skipped()]
    if summary.undecodable:
        named = ", ".join(f"packet {number} at byte {offset}"
                          for number, offset in summary.undecodable[:LISTED])
        more = len(summary.undecodable) - LISTED
        lines.append(f"{path}: {len(summary.undecodable)} packet(s) skipped because their "
                     f"IP/TCP headers could not be read: {named}"
                     + (f" and {more} more" if more > 0 else ""))
    if summary.snap_cut:
        lines.append(f"{path}: {summary.snap_cut} TCP packet(s) were cut by the capture's "
                     "snap length (tcpdump -s): their bytes past it are missing (capture "
                     "with -s 0 to keep whole packets)")
    for damage in summary.damage:
        if damage.at_end:
            lines.append(f"{path} is cut short: {damage.what}; imported the "
                         f"{summary.packets} whole packet(s) before it")
    return lines


def damage(path: Path, summary: PcapSummary) -> list[str]:
    """Damage before the end of the file: packets lost in the middle. Empty when none."""
    damaged = summary.damaged
    if not damaged:
        return []
    return [f"{path} is damaged: {len(damaged)} place(s) before its end are not whole "
            "packet records; every whole packet was imported, these were not:",
            *(f"  {d.what}" for d in damaged)]
