"""``edge-agent status [CONFIG]``: what a technician needs at a glance.

From the running agent when its health endpoint answers (device states, last good
reading and last error, broker link, backlog, drops since start); otherwise from the
outbox file, read-only (the alarms active when the agent last stored their state,
backlog per device, oldest and newest waiting sample and the newest one's qualities,
drops over the file's life). The first line says which.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_agent.alarms.events import AlarmEvent
from edge_agent.config.schema import StationConfig
from edge_agent.i18n import _, ngettext
from edge_agent.store.readonly import FileBacklog, OutboxUnreadable, open_read_only, read_backlog
from edge_agent.tools.ops.alarmlines import alarm_lines, saved_alarm_lines, saved_alarms
from edge_agent.tools.ops.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    AgentUnreachable,
    ask_agent,
    endpoint_url,
    load_station,
)
from edge_agent.tools.ops.livevalues import (
    agent_and_devices_lines,
    counter_lines,
    printable,
    state_word,
    value_lines,
)
from edge_agent.tools.ops.text import duration, parse_iso, plural, table, when


def run_status(args: argparse.Namespace) -> int:
    config = load_station(args.config)
    if config is None:
        return EXIT_CONFIG
    try:
        document = ask_agent(config.health)
        if document.get("station") != config.station_id:
            # Two station files on one PC, one endpoint port: that agent is not this one.
            raise AgentUnreachable(_(
                "the agent answering at {url} is station {other}, not {station} (two station "
                "files with the same health port?)").format(
                    url=endpoint_url(config.health), other=repr(document.get("station")),
                    station=repr(config.station_id)))
    except AgentUnreachable as err:
        reason = str(err)
    else:
        print("\n".join(live_lines(document, endpoint_url(config.health), time.time())))
        return EXIT_OK
    path = args.outbox or config.store.path
    try:
        conn = open_read_only(path)
        try:
            backlog = read_backlog(conn, path)
            alarms = saved_alarms(conn)
        finally:
            conn.close()
    except OutboxUnreadable as err:
        print(_("Station {station}: the agent is not answering: {reason}").format(
            station=config.station_id, reason=reason), file=sys.stderr)
        print(_("and the outbox cannot be read: {error}").format(error=err)
              + _systemd_hint(args.outbox), file=sys.stderr)
        return EXIT_FAILED
    print("\n".join(file_lines(config, backlog, reason, time.time(), alarms)))
    return EXIT_OK


def _systemd_hint(given: Path | None) -> str:
    if given is not None:
        return ""
    return "\n" + _("Under systemd a relative store.path is in the service's state directory: "
                    "add --outbox /var/lib/edge-agent/outbox.sqlite3 (or run with "
                    "STATE_DIRECTORY=/var/lib/edge-agent)")


# -- from the running agent -----------------------------------------------------------

def live_lines(doc: dict[str, Any], url: str, now: float) -> list[str]:
    """The status document of a running agent, for a person."""
    started = parse_iso(doc["started_at"]) or now
    lines = [_("Station {station}: status from the RUNNING agent ({url})").format(
                 station=doc["station"], url=url),
             _("edge-agent {version}, running for {uptime}").format(
                 version=doc["version"], uptime=duration(now - started))]
    alarms = alarm_lines(doc, now)  # active alarms first: what must not be missed
    lines += ["", *alarms, ""] if alarms else []
    lines += [*agent_and_devices_lines(doc), ""]
    rows = [[d["id"], d["link"], state_word(d["state"]),
             when(t, now) if (t := parse_iso(d["last_good_at"])) else _("none since start"),
             printable(d["last_error"] or "-")] for d in doc["devices"]]
    lines += table([_("DEVICE"), _("LINK"), _("STATE"), _("LAST GOOD READING"),
                    _("LAST ERROR")], rows)
    notes = [note for d in doc["devices"] for note in _device_notes(d)]
    lines += ["", *notes] if notes else []
    values = value_lines(doc, now)
    lines += ["", *values] if values else []
    wire = counter_lines(doc)
    lines += ["", *wire] if wire else []
    lines += ["", _broker_line(doc["broker"], now), *_unpublishable_lines(doc["broker"]),
              *_overload_lines(doc["broker"]),
              *_backlog_lines(doc["outbox"], now),
              *_uplink_lines(doc.get("uplinks") or [], now),
              *_skip_lines(doc.get("uplinks") or []),
              _drops_line(doc),
              *_corrupt_lines(doc["outbox"].get("set_aside") or [],
                              doc["outbox"].get("corrupt_lost_total"),
                              _("in this run; a new outbox took its place"))]
    return lines


def _corrupt_lines(set_aside: list[str], lost_total: int | None, note: str) -> list[str]:
    """Corrupt outbox files set aside (renamed, kept) and the samples lost with them."""
    lines = [_("Corrupt:  outbox file set aside as {path} ({note}; kept for recovery by a "
               "person)").format(path=path, note=note) for path in set_aside]
    if lost_total:
        lines.append(_("          {lost} lost with corrupt outbox files over this outbox's "
                       "life (announced as gap events)").format(
                           lost=plural(lost_total, "undelivered sample")))
    elif set_aside and lost_total is None:
        lines.append(_("          samples lost with them: unknown (the outbox cannot be read)"))
    return lines


def _device_notes(device: dict[str, Any]) -> list[str]:
    notes = [_("  {device}: channel {channel} {finding}").format(
                 device=device["id"], channel=channel, finding=finding)
             for channel, finding in sorted(device["isolated_channels"].items())]
    if device["errors"]:
        reasons = ", ".join(f"{reason} {count}" for reason, count in
                            sorted(device["errors"].items(), key=lambda item: -item[1]))
        failed = sum(device["errors"].values())
        notes.append(_("  {device}: {failed} of {polls} failed since start ({reasons})").format(
            device=device["id"], failed=failed, polls=plural(device["polls"], "poll"),
            reasons=reasons))
    return notes


def _broker_line(broker: dict[str, Any], now: float) -> str:
    since = parse_iso(broker["since"]) or now
    host = f"[{broker['host']}]" if ":" in broker["host"] else broker["host"]
    where = _("Broker:   {host}:{port}").format(host=host, port=broker["port"]) \
        + _node_of(broker)
    if broker["connected"]:
        median = broker["ack_latency_median_le_s"]
        latency = _("; PUBACK median under {median:g} s").format(median=median) \
            if median is not None else ""
        return _("{where} connected for {duration}; {acknowledged} acknowledged since start, "
                 "{in_flight} waiting for PUBACK").format(
                     where=where, duration=duration(now - since),
                     acknowledged=plural(broker["acknowledged"], "message"),
                     in_flight=broker["in_flight"]) + latency
    error = _(" (last error: {error})").format(error=broker["last_error"]) \
        if broker["last_error"] else ""
    return _("{where} NOT connected for {duration}{error}; {failures} since start").format(
        where=where, duration=duration(now - since), error=error,
        failures=plural(broker["connect_failures"], "failed attempt"))


def _node_of(broker: dict[str, Any]) -> str:
    """' (node 2 of 3, 1 failover since start)' with several mqtt.brokers; '' with one (or
    from an agent older than failover)."""
    nodes = broker.get("nodes") or []
    if len(nodes) < 2:
        return ""
    host = f"[{broker['host']}]" if ":" in broker["host"] else broker["host"]
    address = f"{host}:{broker['port']}"
    place = _("node {number} of {count}").format(number=nodes.index(address) + 1,
                                                  count=len(nodes)) if address in nodes \
        else _("one of {count} nodes").format(count=len(nodes))
    failovers = broker.get("failovers") or 0
    return _(" ({place}, {failovers} since start)").format(
        place=place, failovers=plural(failovers, "failover"))


def _overload_lines(broker: dict[str, Any]) -> list[str]:
    """Live samples falling behind (forward/overload.py); absent from older agents."""
    moved = broker.get("overload_moved") or 0
    if broker.get("overloaded"):
        return [_("Overload: samples arrive faster than the broker takes them; {samples} "
                  "older than the live window moved to the historical lane since start "
                  "(none lost)").format(samples=plural(moved, "sample"))]
    if moved:
        return [_("Overload: none now; {samples} were sent as historical after falling "
                  "behind the live window since start (none lost)").format(
                      samples=plural(moved, "sample"))]
    return []


def _unpublishable_lines(broker: dict[str, Any]) -> list[str]:
    """Messages set aside as poison (forward/poison.py); absent from older agents."""
    messages = broker.get("unpublishable_messages") or 0
    if not messages:
        return []
    samples = broker.get("unpublishable_samples") or 0
    return [_("Set aside: {messages} ({samples}) could never be published (topic refused by "
              "the MQTT client, or rejected 5 times by the broker) since start; announced as "
              "gap events (unpublishable), see the log").format(
                  messages=plural(messages, "message"), samples=plural(samples, "sample"))]


def _backlog_lines(outbox: dict[str, Any], now: float) -> list[str]:
    if outbox["error"]:
        return [_("Backlog:  unknown: {error}").format(error=outbox["error"])]
    samples, gaps = outbox["samples"], outbox["rows"] - outbox["samples"]
    alarms = outbox.get("alarms") or 0  # absent from agents before issue 17's follow-up
    if samples == 0 and gaps == 0 and alarms == 0:
        return [_("Backlog:  nothing waiting")]
    extra = _(" (+ {gaps})").format(gaps=plural(gaps, "gap event")) if gaps else ""
    if alarms:
        extra += _(" (+ {alarms})").format(alarms=plural(alarms, "alarm event"))
    oldest = parse_iso(outbox["oldest_acquired_at"])
    age = _("; oldest acquired {when}").format(when=when(oldest, now)) if oldest else ""
    return [_("Backlog:  {samples}{extra} waiting").format(
        samples=plural(samples, "sample"), extra=extra) + age]


def _uplink_lines(uplinks: list[dict[str, Any]], now: float) -> list[str]:
    """One row per uplink when there are several (issue 12); with one, the Broker and
    Backlog lines above say it all."""
    if len(uplinks) < 2:
        return []
    rows = [[u["name"], u["node"] or "-",
             _("connected") if u["connected"] else _("NOT connected"),
             _("unknown") if u["backlog_samples"] is None else str(u["backlog_samples"]),
             when(t, now) if (t := parse_iso(u["oldest_waiting_at"])) else "-",
             str(u["in_flight"]), str(u["acknowledged"]), str(u["resent"]),
             str(u["gaps_announced"])] for u in uplinks]
    return ["", _("Uplinks (each acknowledges on its own; a sample leaves the outbox when "
                  "every uplink carrying it has it):"),
            *table([_("UPLINK"), _("NODE"), _("STATE"), _("WAITING"), _("OLDEST WAITING"),
                    _("IN FLIGHT"), _("ACKNOWLEDGED"), _("RE-SENT"), _("GAPS SENT")], rows),
            ""]


def _skip_lines(uplinks: list[dict[str, Any]]) -> list[str]:
    """A line per uplink that let rows go unsent (health/skips.py), by reason; reasons
    are names as /metrics labels them, not translated. Absent from older agents."""
    lines = []
    for uplink in uplinks:
        counts = {reason: n for reason, n in (uplink.get("skipped") or {}).items() if n}
        if counts:
            lines.append(_("Not sent: uplink {name}, on purpose, since start, by reason: "
                           "{counts}").format(
                name=uplink["name"],
                counts=", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))))
    return lines


def _drops_line(doc: dict[str, Any]) -> str:
    outbox = doc["outbox"]
    since = outbox["dropped_since_start"]
    unstored = sum(doc["store_failures"].values())
    if since is None:
        parts = [_("drops since start unknown")]
    else:
        dropped = _("none") if since == 0 else plural(since, "sample")
        parts = [_("{dropped} dropped by retention since start").format(dropped=dropped)]
    if unstored:
        parts.append(_("{samples} could not be stored (disk?)").format(
            samples=plural(unstored, "sample")))
    if alarms_lost := outbox.get("alarm_events_not_stored_total") or 0:
        parts.append(_("alarm events not stored: {events} ({waiting} still waiting in "
                       "memory to be stored)").format(
            events=plural(alarms_lost, "alarm event"),
            waiting=outbox.get("alarm_events_waiting_to_store") or 0))
    total = outbox["dropped_total"]
    in_file = _(" (this outbox file: {total} in total)").format(total=total) \
        if total is not None else ""
    return _("Drops:    {drops}").format(drops=_("; ").join(parts)) + in_file


# -- from the outbox file -------------------------------------------------------------

def file_lines(config: StationConfig, backlog: FileBacklog, reason: str,
               now: float, alarms: Sequence[AlarmEvent] = ()) -> list[str]:
    """What the outbox file can tell while no agent answers; ``alarms``: the active
    ones it holds (alarmlines.saved_alarms), shown first, as a running agent's are."""
    lines = [_("Station {station}: the agent is NOT answering: {reason}").format(
                 station=config.station_id, reason=reason),
             _("Showing what the OUTBOX FILE holds: {path}").format(path=backlog.path),
             _("(device states, the broker link and drops since start are known only to a "
               "running agent)"), ""]
    saved = saved_alarm_lines(alarms, now)
    lines += [*saved, ""] if saved else []
    known = {device.id for device in config.devices}
    in_file = {device.device_id: device for device in backlog.devices}
    rows = []
    for device_id in [d.id for d in config.devices] + sorted(set(in_file) - known):
        device = in_file.get(device_id)
        name = device_id if device_id in known \
            else _("{device} (not in the station file)").format(device=device_id)
        if device is None or device.samples == 0:
            numbered = _("all delivered ({samples} numbered)").format(
                samples=plural(device.last_seq, "sample")) \
                if device is not None and device.last_seq else _("no sample stored yet")
            rows.append([name, "0", "-", "-", numbered])
            continue
        rows.append([name, str(device.samples), when(device.oldest_at or now, now),
                     when(device.newest_at or now, now), _qualities(device.newest_body)])
    lines += table([_("DEVICE"), _("WAITING"), _("OLDEST WAITING"), _("NEWEST WAITING"),
                    _("NEWEST WAITING SAMPLE")], rows)
    dropped = plural(backlog.dropped_total, "sample") if backlog.dropped_total else _("none")
    lines += ["", *_file_backlog_lines(backlog, now),
              _("Drops:    {dropped} dropped by retention over this outbox file's life").format(
                  dropped=dropped),
              *_corrupt_lines(_set_aside_beside(backlog.path), backlog.corrupt_lost_total,
                              _("found beside the outbox"))]
    return lines


def _set_aside_beside(path: Path) -> list[str]:
    """``<name>.corrupt-<time>`` files the agent left beside the outbox (store/corruption.py)."""
    return sorted(str(found) for found in path.parent.glob(f"{path.name}.corrupt-*")
                  if not found.name.endswith(("-wal", "-shm", "-journal")))


def _file_backlog_lines(backlog: FileBacklog, now: float) -> list[str]:
    if backlog.samples == 0 and backlog.gap_events == 0:
        return [_("Backlog:  nothing waiting")]
    lost = sum(device.gap_samples for device in backlog.devices)
    gaps = _(" (+ {gaps} announcing {lost})").format(
        gaps=plural(backlog.gap_events, "gap event"), lost=plural(lost, "lost sample")) \
        if backlog.gap_events else ""
    oldest = _("; oldest acquired {when}").format(when=when(backlog.oldest_at, now)) \
        if backlog.oldest_at else ""
    lines = [_("Backlog:  {samples}{extra} waiting").format(
        samples=plural(backlog.samples, "sample"), extra=gaps) + oldest]
    if backlog.claimed_rows:
        lines.append(ngettext(
            "          {rows} was in a message not yet acknowledged when the agent stopped: "
            "sent again first",
            "          {rows} were in a message not yet acknowledged when the agent stopped: "
            "sent again first", backlog.claimed_rows).format(
                rows=plural(backlog.claimed_rows, "row")))
    return lines


def _qualities(body: dict | None) -> str:
    """'GOOD 2, BAD 1 (b: exception_02)': a sample's qualities, naming what is not GOOD."""
    if not body:
        return "-"
    values = body.get("values", {})
    counts: dict[str, int] = {}
    for value in values.values():
        counts[value["quality"]] = counts.get(value["quality"], 0) + 1
    summary = ", ".join(f"{q} {counts[q]}" for q in ("GOOD", "SUSPECT", "BAD") if q in counts)
    flagged = [f"{name}: {value['reason']}" for name, value in values.items()
               if value["quality"] != "GOOD"]
    if flagged:
        more = _(", +{count} more").format(count=len(flagged) - 3) if len(flagged) > 3 else ""
        summary += f" ({', '.join(flagged[:3])}{more})"
    return summary
