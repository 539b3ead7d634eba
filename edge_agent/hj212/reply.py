"""What the station sends in return for a platform's packet, before it is a packet.

The responder (responder.py) decides *what* to answer and stays pure; the session
(session.py) turns each ``Reply`` into a packet with the station's ST, PW, MN, version,
a QN and the Flag, and sends it. Kept apart so neither imports the other's machinery.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """One packet to send. ``answer_to``: the request's QN, echoed (9011, 9012, 9013):
    the packet is an answer, sent once and never answered itself. None: an upload
    (history records, 2081), with a fresh QN, sent like any data upload (acknowledged
    by 9014 when the platform asks for acknowledgements, re-sent on timeout)."""

    cn: str
    cp: str
    answer_to: str | None = None

    @property
    def is_answer(self) -> bool:
        return self.answer_to is not None
