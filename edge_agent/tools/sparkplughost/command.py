"""``edge-agent sparkplug-host``: the primary host simulator's main loop.

Connects (HostLink), says ``ready`` once subscribed and online, sends the rebirth
requests asked for, then prints each event HostModel makes of what arrives, until Ctrl-C
or SIGTERM; then it publishes its offline STATE and disconnects. If it dies instead, the
broker publishes the same offline STATE from the will.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import datetime
from typing import TextIO

from edge_agent.model import utc_now
from edge_agent.sparkplug.commands import rebirth_command
from edge_agent.sparkplug.datatypes import epoch_ms
from edge_agent.sparkplug.state import encode_state
from edge_agent.sparkplug.topics import SparkplugIdError, Verb, node_topic, state_topic
from edge_agent.stopsignals import SignalEvent
from edge_agent.tools.sparkplughost.arguments import EXIT_NO_BROKER, EXIT_STOPPED, EXIT_USAGE
from edge_agent.tools.sparkplughost.hostmodel import Event, HostModel
from edge_agent.tools.sparkplughost.mqttlink import HostLink, HostLinkError
from edge_agent.tools.sparkplughost.render import line, record


class _Output:
    """Prints events and writes them to the --jsonl file; called from paho's thread."""

    def __init__(self, jsonl: TextIO | None) -> None:
        self._jsonl = jsonl
        self._lock = threading.Lock()

    def show(self, events: list[Event]) -> None:
        with self._lock:
            for event in events:
                print(line(event), flush=True)
                self._write(record(event))

    def note(self, document: dict[str, object], text: str) -> None:
        with self._lock:
            print(text, flush=True)
            self._write(json.dumps(document))

    def _write(self, text: str) -> None:
        if self._jsonl is not None:
            self._jsonl.write(text + "\n")
            self._jsonl.flush()


def _rebirth_topics(nodes: list[str]) -> list[tuple[str, str]]:
    topics = []
    for node in nodes:
        group, _, edge_node = node.partition("/")
        if not group or not edge_node or "/" in edge_node:
            raise SparkplugIdError(f"--rebirth {node!r}: expected GROUP/EDGE_NODE")
        topics.append((node, node_topic(Verb.NCMD, group, edge_node)))
    return topics


def _denies_us(events: list[Event], host_id: str, born_at: datetime) -> bool:
    """True for an offline STATE of this host, as new as this run: the broker sent our
    will while we still run (a connection it thought dead), or another client wrote it.
    A primary host answers with its online STATE again; an offline STATE of an earlier
    run (older timestamp, retained) is history and left alone."""
    return any(event.kind == "state" and event.node == host_id and event.value is False
               and (event.timestamp_ms or 0) >= epoch_ms(born_at) for event in events)


def run_host(args: argparse.Namespace) -> int:
    """Run the host until Ctrl-C or SIGTERM; the exit status (arguments.py lists them)."""
    try:
        own_state = state_topic(args.host_id)
        rebirths = _rebirth_topics(args.rebirth)
    except SparkplugIdError as err:
        print(f"sparkplug-host: {err}", file=sys.stderr)
        return EXIT_USAGE
    password = None
    if args.password_file is not None:
        try:
            password = args.password_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as err:
            print(f"sparkplug-host: --password-file {args.password_file}: cannot be read "
                  f"({err})", file=sys.stderr)
            return EXIT_USAGE
    jsonl = open(args.jsonl, "a", encoding="utf-8") if args.jsonl else None  # noqa: SIM115
    output, model = _Output(jsonl), HostModel()
    stop = SignalEvent()  # set by the handlers: no lock to deadlock on (stopsignals.py)
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    born_at = utc_now()  # the birth STATE repeats the will's timestamp
    ready = threading.Event()

    def received(topic: str, payload: bytes, _retained: bool) -> None:
        events = model.receive(topic, payload)
        output.show(events)
        if ready.is_set() and not stop.is_set() and _denies_us(events, args.host_id, born_at):
            link.publish_soon(own_state, encode_state(True, utc_now()), qos=1, retain=True)
            output.note({"kind": "state_republished", "host_id": args.host_id},
                        f"STATE {args.host_id} said offline while running: online again")

    link = HostLink(args.broker, args.port, args.host_id, encode_state(False, born_at),
                    received, username=args.username, password=password)
    try:
        link.start(args.connect_timeout)
    except HostLinkError as err:
        print(f"sparkplug-host: {err}", file=sys.stderr)
        return EXIT_NO_BROKER
    try:
        link.publish(own_state, encode_state(True, born_at), qos=1, retain=True)
        output.note({"kind": "ready", "host_id": args.host_id},
                    f"READY host {args.host_id} online on {args.broker}:{args.port}")
        ready.set()
        for node, topic in rebirths:
            link.publish(topic, rebirth_command(epoch_ms(utc_now())), qos=0)
            output.note({"kind": "rebirth_sent", "node": node}, f"NCMD {node} rebirth sent")
        stop.wait()
    finally:
        link.close(own_state, encode_state(False, utc_now()))
        output.note({"kind": "stopped", "rule_breaks": model.rule_breaks},
                    f"STOPPED {model.rule_breaks} rule break(s) seen")
        if jsonl is not None:
            jsonl.close()
    return EXIT_STOPPED
