"""``edge-agent poll STATION.yaml [--device ID] [--raw]``: validate the file as ``check``
does (the same messages, exit 2), read each device once, print what was read.

Nothing here opens the outbox for writing or connects to the broker: the outbox is only
read (``published.py``, for a triggered device's last published analysis) and only when
it exists. Links are polled one after another in the order of the station file, each
opened for the poll and closed after, so the command ends when the last device has
answered or timed out (with the retries the service would give it).
"""

from __future__ import annotations

import argparse
import sys
import time

from edge_agent.cli import _load
from edge_agent.config.schema import Device, StationConfig
from edge_agent.tools.poll.arguments import (
    EXIT_ALL_ANSWERED,
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_SOME_SILENT,
)
from edge_agent.tools.poll.once import DeviceResult, poll_link
from edge_agent.tools.poll.render import render_device, summary

# Technician-facing text of this module, in one place.
HEADER = ("station {station}: polling {devices} device{ds} on {links} link{ls} once "
          "(from {source})")
UNKNOWN_DEVICE = "{path}: no device with id '{wanted}' (devices: {known})"
DONE = "polled in {seconds:.1f} s"
INTERRUPTED = "interrupted: nothing was stored or published"


def run_poll(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return EXIT_CONFIG
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    config = loaded.config
    devices = _chosen(config, args.device or [])
    if devices is None:
        return EXIT_CONFIG
    links = list(dict.fromkeys(device.link for device in devices))
    print(HEADER.format(station=config.station_id, devices=len(devices),
                        ds="s" * (len(devices) != 1), links=len(links),
                        ls="s" * (len(links) != 1), source=args.config))
    started = time.monotonic()
    results: list[DeviceResult] = []
    try:
        _poll_links(config, links, devices, args.raw, results)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    print()
    print(summary(results))
    print(DONE.format(seconds=time.monotonic() - started))
    return EXIT_ALL_ANSWERED if all(result.answered for result in results) \
        else EXIT_SOME_SILENT


def _poll_links(config: StationConfig, links: list[str], devices: list[Device], raw: bool,
                results: list[DeviceResult]) -> None:
    """Poll ``links`` in turn, printing each device as soon as it is done."""
    for name in links:
        on_link = [device for device in devices if device.link == name]
        for result in poll_link(config.links[name], on_link, config.polling,
                                config.store.path):
            results.append(result)
            print()
            print("\n".join(render_device(result, raw)), flush=True)


def _chosen(config: StationConfig, wanted: list[str]) -> list[Device] | None:
    """The devices to poll: all, or those named by ``--device`` (in the file's order);
    None after saying which id is unknown."""
    if not wanted:
        return list(config.devices)
    known = [device.id for device in config.devices]
    for name in wanted:
        if name not in known:
            print(UNKNOWN_DEVICE.format(path=config.source or "station file", wanted=name,
                                        known=", ".join(known)), file=sys.stderr)
            return None
    return [device for device in config.devices if device.id in wanted]
