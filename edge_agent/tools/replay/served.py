"""What a Modbus replay answers, said at its start: per unit id, the register ranges the
recording read (0-based wire addresses, by table), so the station file pointed at the
replay can be checked against it before the first poll fails with exception 02."""

from __future__ import annotations

from edge_agent.tools.capture.modbus_frames import decode_pdu
from edge_agent.tools.replay.script import Script, adu
from edge_agent.tools.sim.ranges import ranges_text

READ_TABLES = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}  # by function code

# Technician-facing text of this module, in one place.
UNIT_LINE = "  unit {unit}: {ranges}"


def read_ranges(script: Script) -> dict[int, dict[str, list[int]]]:
    """Per unit id (in the order first heard), per table, every address a recorded read
    request covered."""
    units: dict[int, dict[str, list[int]]] = {}
    for exchange in script.exchanges:
        request = adu(exchange.request.data, script.protocol)
        if request is None or len(request) < 2:
            continue
        unit, pdu = request[0], request[1:]
        info = decode_pdu(pdu, is_request=True)
        tables = units.setdefault(unit, {})
        if info.malformed is None and pdu[0] in READ_TABLES and info.address is not None:
            tables.setdefault(READ_TABLES[pdu[0]], []).extend(
                range(info.address, info.address + (info.count or 0)))
    return units


def served_lines(script: Script) -> list[str]:
    """One line per unit the recording asked: ``  unit 1: holding 0-19``."""
    return [UNIT_LINE.format(unit=unit, ranges=ranges_text(tables))
            for unit, tables in read_ranges(script).items()]
