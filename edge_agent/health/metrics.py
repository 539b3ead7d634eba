"""A Snapshot in the Prometheus text exposition format (version 0.0.4).

Written by hand (a page of code) rather than with prometheus_client, so the agent on a
station PC has no extra runtime dependency; the tests parse this output with
prometheus_client's own parser, so a formatting slip fails there. Every name and label is
documented in docs/metrics.md; change both together.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from edge_agent.health.alarms_view import alarm_families
from edge_agent.health.histogram import HistogramSnapshot
from edge_agent.health.snapshot import DeviceView, EndpointView, Snapshot, UplinkView

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("ok", "degraded", "down")
Sample = tuple[dict[str, str], float]


def render(snapshot: Snapshot) -> str:
    """The whole /metrics page for ``snapshot``."""
    out: list[str] = []
    _agent(out, snapshot)
    _devices(out, snapshot.devices)
    for family in alarm_families(snapshot.alarms):
        _family(out, *family)
    _family(out, "edge_agent_link_store_failures_total", "counter",
            "Samples of this link that could not be stored (disk full, I/O error); "
            "announced later as gap events.",
            [({"link": link}, count) for link, count in snapshot.store_failures.items()])
    _outbox(out, snapshot)
    _broker(out, snapshot)
    _uplinks(out, snapshot.uplinks, snapshot.taken_at)
    if snapshot.endpoint is not None:
        _endpoint(out, snapshot.endpoint)
    return "\n".join(out) + "\n"


def _agent(out: list[str], snapshot: Snapshot) -> None:
    _family(out, "edge_agent_info", "gauge", "Always 1; the labels name the agent and station.",
            [({"version": snapshot.version, "station": snapshot.station}, 1)])
    _family(out, "edge_agent_start_time_seconds", "gauge",
            "When the agent started, in unix seconds.", [({}, snapshot.started_at)])
    _family(out, "edge_agent_healthy", "gauge",
            "1 when pollers, forwarder and outbox writer are alive (as /healthz says), else 0.",
            [({}, int(snapshot.healthy))])


def _devices(out: list[str], devices: Iterable[DeviceView]) -> None:
    devices = list(devices)

    def per_device(value: str) -> list[Sample]:
        return [({"device": d.id, "link": d.link}, getattr(d, value)) for d in devices]

    _family(out, "edge_agent_device_polls_total", "counter",
            "Polls of the device, answered or not.", per_device("polls"))
    _family(out, "edge_agent_device_errors_total", "counter",
            "Failed polls of the device, by reason (timeout, no_connection, crc, ...).",
            [({"device": d.id, "link": d.link, "reason": reason}, count)
             for d in devices for reason, count in sorted(d.errors.items())])
    _family(out, "edge_agent_device_samples_stored_total", "counter",
            "Samples of the device committed to the outbox (failed polls included, as BAD).",
            per_device("samples_stored"))
    _family(out, "edge_agent_device_state", "gauge",
            "1 for the device's current state (ok, degraded, down), 0 for the others.",
            [({"device": d.id, "link": d.link, "state": state}, int(d.state == state))
             for d in devices for state in STATES])
    _family(out, "edge_agent_device_state_entered_total", "counter",
            "Times the device became degraded or down (shows flapping).",
            [({"device": d.id, "link": d.link, "state": state}, d.entered.get(state, 0))
             for d in devices for state in STATES[1:]])
    _family(out, "edge_agent_device_last_good_timestamp_seconds", "gauge",
            "When the device last answered a poll, in unix seconds (absent: not yet).",
            [({"device": d.id, "link": d.link}, d.last_good_at)
             for d in devices if d.last_good_at is not None])
    _family(out, "edge_agent_device_channel_isolated", "gauge",
            "1 for each channel that answers Modbus exception 02 (illegal data address) "
            "on its own, found by splitting a merged read.",
            [({"device": d.id, "link": d.link, "channel": channel}, 1)
             for d in devices for channel in sorted(d.isolated)])


def _outbox(out: list[str], snapshot: Snapshot) -> None:
    _family(out, "edge_agent_outbox_files_set_aside_total", "counter",
            "Corrupt outbox files renamed to <name>.corrupt-<time> (kept) and replaced by "
            "a new outbox since the agent started.",
            [({}, len(snapshot.outbox.set_aside))])
    depth = snapshot.outbox.depth
    if depth is None:  # not readable now: /healthz says why; absent beats a wrong 0
        return
    age = 0.0 if depth.oldest_acquired_at is None \
        else max(0.0, snapshot.taken_at - depth.oldest_acquired_at)
    _family(out, "edge_agent_outbox_rows", "gauge",
            "Rows waiting in the outbox: samples plus gap events.", [({}, depth.rows)])
    _family(out, "edge_agent_outbox_alarms", "gauge",
            "Alarm events waiting in the outbox for the broker's acknowledgement (sent "
            "before any sample; not in edge_agent_outbox_rows).", [({}, depth.alarms)])
    _family(out, "edge_agent_alarm_events_not_stored_total", "counter",
            "Alarm events whose outbox transaction failed (disk full) since the agent "
            "started; kept in memory and stored with the next commit.",
            [({}, depth.alarm_events_not_stored_total)])
    _family(out, "edge_agent_alarm_events_waiting_to_store", "gauge",
            "Alarm events not stored yet (in memory, lost if the agent stops first).",
            [({}, depth.alarm_events_waiting_to_store)])
    _family(out, "edge_agent_outbox_samples", "gauge",
            "Samples waiting in the outbox for the broker's acknowledgement.",
            [({}, depth.samples)])
    _family(out, "edge_agent_outbox_oldest_sample_age_seconds", "gauge",
            "Age of the oldest undelivered sample (0 when none waits).", [({}, age)])
    _family(out, "edge_agent_outbox_dropped_samples_total", "counter",
            "Undelivered samples dropped by the retention limits, over the outbox file's "
            "life (kept across restarts).", [({}, depth.dropped_total)])
    _family(out, "edge_agent_outbox_bytes", "gauge",
            "Bytes of database pages in use (what store.retention.max_bytes limits).",
            [({}, depth.bytes_in_use)])
    _family(out, "edge_agent_outbox_corrupt_lost_samples_total", "counter",
            "Undelivered samples lost with corrupt outbox files (announced as gap events), "
            "over the outbox's life (carried into each new file).",
            [({}, depth.corrupt_lost_total)])


def _broker(out: list[str], snapshot: Snapshot) -> None:
    broker = snapshot.broker
    _family(out, "edge_agent_mqtt_connected", "gauge",
            "1 while a session with the broker is up.", [({}, int(broker.connected))])
    address = f"[{broker.host}]:{broker.port}" if ":" in broker.host else \
        f"{broker.host}:{broker.port}"
    _family(out, "edge_agent_mqtt_broker_node_info", "gauge",
            "Always 1; the address label names the broker node of the live session, or "
            "the one being tried (mqtt.brokers: failover).", [({"address": address}, 1)])
    _family(out, "edge_agent_mqtt_failovers_total", "counter",
            "Sessions opened on another broker node than the session before.",
            [({}, broker.failovers)])
    _family(out, "edge_agent_mqtt_sessions_total", "counter",
            "Sessions established with the broker.", [({}, broker.sessions)])
    _family(out, "edge_agent_mqtt_connect_failures_total", "counter",
            "Failed attempts to connect to the broker.", [({}, broker.connect_failures)])
    _family(out, "edge_agent_mqtt_messages_published_total", "counter",
            "Messages handed to the broker (a message carries one or more samples).",
            [({}, broker.published)])
    _family(out, "edge_agent_mqtt_messages_acknowledged_total", "counter",
            "Messages the broker acknowledged (PUBACK) and the outbox then deleted.",
            [({}, broker.acknowledged)])
    _family(out, "edge_agent_mqtt_messages_rejected_total", "counter",
            "Broker rejections of a message (MQTT 5 reason code); it is re-sent with "
            "backoff and set aside after 5.", [({}, broker.rejected)])
    _family(out, "edge_agent_mqtt_messages_unpublishable_total", "counter",
            "Messages that can never be published (refused by the MQTT client, or "
            "rejected 5 times by the broker), removed from the outbox since the agent "
            "started; their samples are announced as gap events (unpublishable).",
            [({}, broker.unpublishable_messages)])
    _family(out, "edge_agent_mqtt_samples_unpublishable_total", "counter",
            "Samples in those messages, announced as gap events instead.",
            [({}, broker.unpublishable_samples)])
    _family(out, "edge_agent_mqtt_overloaded", "gauge",
            "1 while samples arrive faster than the broker takes them and live samples "
            "fall behind the live window (they are sent later as historical).",
            [({}, int(broker.overloaded))])
    _family(out, "edge_agent_mqtt_samples_moved_to_historical_total", "counter",
            "Live samples moved to the historical lane because they fell a live window "
            "behind (overload); none is lost.", [({}, broker.overload_moved)])
    _family(out, "edge_agent_mqtt_in_flight_messages", "gauge",
            "Messages sent and not yet acknowledged.", [({}, broker.in_flight)])
    _histogram(out, "edge_agent_mqtt_ack_latency_seconds",
               "Seconds from handing a message to the MQTT session to its PUBACK.",
               broker.ack_latency)


def _uplinks(out: list[str], uplinks: Iterable[UplinkView], now: float) -> None:
    """Per uplink, labelled ``uplink="NAME"`` (issue 12); the unlabelled ``mqtt`` series
    above are the first uplink's, as before."""
    uplinks = list(uplinks)
    read = [u for u in uplinks if u.backlog is not None]

    def each(value: str) -> list[Sample]:
        return [({"uplink": u.name}, getattr(u, value)) for u in uplinks]

    _family(out, "edge_agent_uplink_connected", "gauge",
            "1 while the uplink has a session with its broker.",
            [({"uplink": u.name}, int(u.connected)) for u in uplinks])
    _family(out, "edge_agent_uplink_node_info", "gauge",
            "Always 1; the node label names the broker node of the uplink's live session, "
            "or the one being tried.",
            [({"uplink": u.name, "node": u.node}, 1) for u in uplinks])
    _family(out, "edge_agent_uplink_backlog_samples", "gauge",
            "Samples of the uplink's devices waiting in the outbox that it has not "
            "acknowledged (in flight included).",
            [({"uplink": u.name}, u.backlog or 0) for u in read])
    _family(out, "edge_agent_uplink_oldest_waiting_age_seconds", "gauge",
            "Age of the oldest sample the uplink has not acknowledged (0 when none waits).",
            [({"uplink": u.name}, 0.0 if u.oldest_waiting_at is None
              else max(0.0, now - u.oldest_waiting_at)) for u in read])
    _family(out, "edge_agent_uplink_in_flight_messages", "gauge",
            "Messages the uplink sent and its broker has not acknowledged yet.",
            each("in_flight"))
    _family(out, "edge_agent_uplink_messages_acknowledged_total", "counter",
            "Messages the uplink's broker acknowledged, since the agent started.",
            each("acknowledged"))
    _family(out, "edge_agent_uplink_messages_resent_total", "counter",
            "Messages sent again (same id) after a session ended with them unacknowledged.",
            each("resent"))
    _family(out, "edge_agent_uplink_gaps_announced_total", "counter",
            "Gap events the uplink's broker acknowledged, since the agent started.",
            each("gaps_announced"))
    _family(out, "edge_agent_uplink_skipped_total", "counter",
            "Outbox rows the uplink let go without sending them, by reason (HJ 212: "
            "gaps_skipped, alarms_skipped, unmapped, rtd_thinned, ...; Sparkplug: "
            "gaps_skipped, alarms_skipped, while_dead, unreadable), since the agent started.",
            [({"uplink": u.name, "reason": reason}, count) for u in uplinks
             for reason, count in sorted((u.skipped or {}).items())])


def _endpoint(out: list[str], endpoint: EndpointView) -> None:
    _family(out, "edge_agent_health_open_connections", "gauge",
            "Connections open to this endpoint now, the scrape's own included "
            f"(at most {endpoint.max_connections}; more are answered 503).",
            [({}, endpoint.open_connections)])
    _family(out, "edge_agent_health_client_errors_total", "counter",
            "Requests to this endpoint refused or cut short, by reason (busy, "
            "request_timeout, headers_too_large, disconnected, ...).",
            [({"reason": reason}, count)
             for reason, count in sorted(endpoint.client_errors.items())])


def _histogram(out: list[str], name: str, text: str, histogram: HistogramSnapshot) -> None:
    out.append(f"# HELP {name} {_escape_help(text)}")
    out.append(f"# TYPE {name} histogram")
    for bound, count in zip(histogram.bounds, histogram.cumulative, strict=True):
        out.append(f'{name}_bucket{{le="{_number(bound)}"}} {count}')
    out.append(f'{name}_bucket{{le="+Inf"}} {histogram.count}')
    out.append(f"{name}_sum {_number(histogram.sum)}")
    out.append(f"{name}_count {histogram.count}")


def _family(out: list[str], name: str, kind: str, text: str, samples: list[Sample]) -> None:
    out.append(f"# HELP {name} {_escape_help(text)}")
    out.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        out.append(f"{name}{_labels(labels)} {_number(value)}")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_label(str(value))}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
