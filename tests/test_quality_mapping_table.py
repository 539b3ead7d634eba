"""docs/payload.md's mapping table (agent quality and reason to HJ 212 flag and Sparkplug
quality) is what the code does: every row of the table, read from the document itself,
is checked against ``hj212.flags.flag_for`` and ``sparkplug.quality.quality_code``, so
the table and the code cannot drift apart (they once did: the table said 64 for SUSPECT,
a code Sparkplug 3.0 does not allow)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_agent.hj212.flags import flag_for
from edge_agent.model import Quality
from edge_agent.sparkplug.quality import SPEC_CODES, quality_code

TABLE_DOC = Path(__file__).resolve().parent.parent / "docs" / "payload.md"


def _table_rows() -> list[tuple[Quality, str | None, str, int]]:
    """(quality, reason, HJ 212 flag, Sparkplug code) for each concrete row of the table:
    one per quality and reason it names (the profile-defined row is checked apart)."""
    text = TABLE_DOC.read_text(encoding="utf-8")
    section = text.split("### Mapping to HJ 212 data flags and Sparkplug", 1)[1]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[1].startswith("`"):
            continue
        names, flag_cell, code_cell = cells
        flag = re.match(r"`(\w)`", flag_cell).group(1)
        code = int(re.match(r"(\d+)", code_cell).group(1))
        qualities, _, reasons = names.partition(",")
        for word in qualities.split("/"):
            quality = Quality[word.strip()]
            for reason in re.findall(r"`([a-z_X]+)`", reasons) or [None]:
                rows.append((quality, reason.replace("XX", "02") if reason else None,
                             flag, code))
    return rows


ROWS = _table_rows()


def test_the_table_was_read() -> None:
    assert len(ROWS) >= 25
    assert (Quality.GOOD, None, "N", 192) in ROWS


@pytest.mark.parametrize(("quality", "reason", "flag", "code"), ROWS,
                         ids=lambda value: str(value))
def test_each_row_of_the_table_is_what_the_code_sends(quality: Quality, reason: str | None,
                                                      flag: str, code: int) -> None:
    assert flag_for(quality, reason) == flag
    assert quality_code(quality) == code
    assert code in SPEC_CODES
