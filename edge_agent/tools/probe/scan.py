"""Which unit ids answer on a bus (or behind a TCP gateway).

One short read per unit id. Any answer means a device is there, including a Modbus
exception reply (a device that has no register 0, or does not know the function, still
answered). Two exception replies are not a device: 0A and 0B come from a *gateway* saying
it could not reach the unit, so they count as silence. A garbled answer is reported apart:
on a serial bus it usually means a device at another baud rate or parity, or two units
answering at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from edge_agent_drivers.modbus.protocol.transport import ModbusExceptionReply, ModbusLinkClient
from edge_agent_drivers.modbus.settings import RegisterKind

from edge_agent.link import BadResponse, DeviceTimeout, LinkDown

GATEWAY_CODES = {0x0A, 0x0B}


class Answer(StrEnum):
    """What one unit id did when asked."""

    DATA = "data"
    EXCEPTION = "exception"
    GARBLED = "garbled"
    SILENT = "silent"


@dataclass(frozen=True)
class UnitOutcome:
    """One unit id's answer; ``value`` is the register (or bit) read, ``code`` the
    exception code, ``detail`` what was wrong with a garbled answer."""

    unit_id: int
    answer: Answer
    value: int | None = None
    code: int | None = None
    detail: str = ""

    @property
    def present(self) -> bool:
        return self.answer in (Answer.DATA, Answer.EXCEPTION)


@dataclass
class ScanReport:
    """Everything a scan saw; silent and gateway-refused units are only counted."""

    tried: int = 0
    outcomes: list[UnitOutcome] = field(default_factory=list)
    gateway_replies: int = 0  # 0A/0B: a gateway is there, the unit behind it is not

    @property
    def present(self) -> list[UnitOutcome]:
        return [outcome for outcome in self.outcomes if outcome.present]

    @property
    def garbled(self) -> list[UnitOutcome]:
        return [outcome for outcome in self.outcomes if outcome.answer is Answer.GARBLED]

    def add(self, outcome: UnitOutcome) -> None:
        """Count one unit's outcome; only answers are kept, silence is counted."""
        self.tried += 1
        if outcome.answer is not Answer.SILENT:
            self.outcomes.append(outcome)
        elif outcome.code is not None:
            self.gateway_replies += 1


class LinkUnusable(Exception):
    """The port or host cannot be used at all; carries the reason for the technician."""


def ask_unit(client: ModbusLinkClient, unit_id: int, kind: RegisterKind, address: int,
             link_problem: Callable[[], str | None]) -> UnitOutcome:
    """Ask ``unit_id`` for one register (or bit) at ``address`` and classify the answer.

    ``link_problem`` is consulted when the link goes down: a reason (port missing, host
    refusing) raises LinkUnusable, since no other unit can answer either; None means the
    other end only dropped the connection (some gateways do for unknown units), which
    counts as this unit's silence and the next request reconnects.
    """
    try:
        if kind.is_bit:
            value = int(client.read_bits(unit_id, kind, address, 1)[0])
        else:
            value = client.read_registers(unit_id, kind, address, 1)[0]
    except ModbusExceptionReply as reply:
        if reply.code in GATEWAY_CODES:
            return UnitOutcome(unit_id, Answer.SILENT, code=reply.code)
        return UnitOutcome(unit_id, Answer.EXCEPTION, code=reply.code)
    except DeviceTimeout:
        return UnitOutcome(unit_id, Answer.SILENT)
    except BadResponse as err:
        return UnitOutcome(unit_id, Answer.GARBLED,
                           detail=str(err).removeprefix(f"unit {unit_id}: "))
    except LinkDown as err:
        reason = link_problem()
        if reason is not None:
            raise LinkUnusable(reason) from err
        return UnitOutcome(unit_id, Answer.SILENT)
    return UnitOutcome(unit_id, Answer.DATA, value=value)
