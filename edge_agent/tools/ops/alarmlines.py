"""The "Alarms" block of ``edge-agent status``: the active alarms of a running agent,
right under the first two lines, because an alarm is the first thing a technician must
see. Nothing is printed when none is active (a quiet station reads as before).

Drawn from the ``alarms`` list of /status (docs/metrics.md); an older agent without that
list shows no block. Device-supplied text goes through ``printable``.
"""

from __future__ import annotations

from typing import Any

from edge_agent.i18n import _, ngettext
from edge_agent.tools.ops.livevalues import printable
from edge_agent.tools.ops.text import parse_iso, table, when


def alarm_lines(doc: dict[str, Any], now: float) -> list[str]:
    """The block (a title line and a table), or [] when no alarm is active."""
    alarms = doc.get("alarms") or []
    if not alarms:
        return []
    title = ngettext("ALARMS: {count} active alarm", "ALARMS: {count} active alarms",
                     len(alarms)).format(count=len(alarms))
    rows = [[_("LEVEL {level}").format(level=a["level"]),
             printable(f"{a['device']}/{a['channel']}"), printable(str(a["rule"])),
             _reading(a), when(at, now) if (at := parse_iso(a["since"])) else "-",
             _("confirmed") if a["confirmed"] else
             _("UNCONFIRMED: {reason}").format(reason=printable(str(a["reason"])))]
            for a in alarms]
    return [title, *table([_("LEVEL"), _("DEVICE/CHANNEL"), _("RULE"), _("VALUE / LIMIT"),
                           _("SINCE"), _("CONFIRMED")], rows)]


def _reading(alarm: dict[str, Any]) -> str:
    """'25 ppm > limit 20', or the value alone for instrument and communication alarms."""
    value = alarm["value"]
    shown = "-" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)
    shown = printable(f"{shown} {alarm['unit'] or ''}".rstrip())
    if alarm["limit"] is None:
        return shown
    return _("{value} (limit {limit})").format(value=shown, limit=f"{alarm['limit']:g}")
