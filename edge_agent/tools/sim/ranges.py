"""The register ranges a served unit answers, in one line a technician can compare with
the station file: ``holding 0-8, 12-19; input 0-3`` (0-based wire addresses, as the
station file's ``address:``). Shared by ``simulate`` and ``replay``, which print them at
start."""

from __future__ import annotations

from collections.abc import Iterable

# Technician-facing text of this module, in one place.
NOTHING = "no registers"


def runs(addresses: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted addresses as inclusive (first, last) runs of consecutive addresses."""
    found: list[tuple[int, int]] = []
    for address in sorted(set(addresses)):
        if found and address == found[-1][1] + 1:
            found[-1] = (found[-1][0], address)
        else:
            found.append((address, address))
    return found


def ranges_text(tables: dict[str, Iterable[int]]) -> str:
    """``holding 0-8, 12-19; input 0-3`` in the order of ``tables``; tables without an
    address are left out."""
    parts = []
    for table, addresses in tables.items():
        spans = [str(first) if first == last else f"{first}-{last}"
                 for first, last in runs(addresses)]
        if spans:
            parts.append(f"{table} {', '.join(spans)}")
    return "; ".join(parts) or NOTHING
