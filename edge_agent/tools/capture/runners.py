"""What ``edge-agent capture ...`` and ``edge-agent replay ...`` do once their command line
is parsed (``commands.py``): open files and ports, run until done or Ctrl-C, say what
happened in words a technician can act on, and return the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from edge_agent.tools.capture.arguments import (
    EXIT_DAMAGED,
    EXIT_LINK,
    EXIT_MISMATCH,
    EXIT_OK,
    EXIT_USAGE,
)
from edge_agent.tools.capture.continuing import highest_numbers
from edge_agent.tools.capture.exchanges import tally
from edge_agent.tools.capture.files import CaptureError, CaptureWriter, read_capture
from edge_agent.tools.capture.files import write_capture as write_capture_file
from edge_agent.tools.capture.format import Header, LinkInfo
from edge_agent.tools.capture.pcap_import import MODBUS_PORT, import_pcap
from edge_agent.tools.capture.pcap_read import PcapError
from edge_agent.tools.capture.pcap_report import damage, warnings
from edge_agent.tools.capture.proxy import RecordingProxy
from edge_agent.tools.replay.image import RegisterImage
from edge_agent.tools.replay.rtu_server import RtuReplayServer
from edge_agent.tools.replay.script import Script, ScriptError, load_script
from edge_agent.tools.replay.serve import ImageReplay, RecordingClock, Reply, Responder
from edge_agent.tools.replay.served import served_lines
from edge_agent.tools.replay.strict import StrictReplay
from edge_agent.tools.replay.tcp_server import TcpReplayServer
from edge_agent.tools.replay.text import StrictTextReplay

LAST_ANSWER_LINGER_S = 0.5


def _say(text: str) -> None:
    print(text, flush=True)


def _fail(text: str, status: int) -> int:
    print(f"edge-agent: {text}", file=sys.stderr, flush=True)
    return status


def _warn(text: str) -> None:
    print(f"edge-agent: warning: {text}", file=sys.stderr, flush=True)


def _stop_event() -> asyncio.Event:
    """Set by Ctrl-C (SIGINT) or SIGTERM, the ways a technician or systemd stops us."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


# -- capture proxy -----------------------------------------------------------------------


def capture_proxy(args: argparse.Namespace) -> int:
    host, port = args.listen
    target_host, target_port = args.target
    try:
        writer = CaptureWriter.append_to(args.out) if args.append else CaptureWriter.create(
            args.out, Header(datetime.now(UTC), "proxy", (LinkInfo(
                args.name, "modbus-tcp", f"{target_host}:{target_port}",
                listen=f"{host}:{port}"),), tuple(sorted(set(args.unit)))))
    except (CaptureError, OSError) as err:
        return _fail(str(err), EXIT_USAGE)
    if args.name not in {link.name for link in writer.header.links}:
        writer.close()
        return _fail(f"{args.out}: the capture has no link {args.name!r} to append to "
                     "(give its --name)", EXIT_USAGE)
    try:
        return asyncio.run(_run_proxy(args, writer))
    finally:
        writer.close()


async def _run_proxy(args: argparse.Namespace, writer: CaptureWriter) -> int:
    xid, conn = highest_numbers(args.out, args.name) if args.append else (0, 0)
    proxy = RecordingProxy(args.target, writer, args.name, first_xid=xid + 1,
                           first_conn=conn + 1)
    try:
        port = await proxy.start(*args.listen)
    except OSError as err:
        return _fail(f"cannot listen on {args.listen[0]}:{args.listen[1]}: {err.strerror} "
                     "(another program on that port? a port below 1024 needs root)", EXIT_LINK)
    stop = _stop_event()
    _say(f"recording: masters connect to {args.listen[0]}:{port}, forwarded to "
         f"{args.target[0]}:{args.target[1]}, written to {args.out}; Ctrl-C stops")
    await stop.wait()
    await proxy.close()
    _say(f"stopped: {proxy.frames_recorded} frames recorded in {args.out}")
    if proxy.failure is not None:
        return _fail(f"{args.out}: the recording stopped early: {proxy.failure}", 1)
    return EXIT_OK


# -- capture import / check --------------------------------------------------------------


def capture_import(args: argparse.Namespace) -> int:
    ports = tuple(args.port) or (MODBUS_PORT,)
    try:
        imported = import_pcap(args.pcap, ports)
    except FileNotFoundError:
        return _fail(f"{args.pcap}: no such file", EXIT_USAGE)
    except PcapError as err:
        return _fail(str(err), EXIT_USAGE)
    for line in warnings(args.pcap, imported.pcap):
        _warn(line)
    damaged = damage(args.pcap, imported.pcap)
    if not any(True for _ in imported.records):
        for line in damaged:
            _warn(line)
        return _fail(f"{args.pcap}: no Modbus/TCP traffic on port(s) "
                     f"{', '.join(map(str, ports))} (use --port for another)", EXIT_USAGE)
    write_capture_file(args.out, imported.header, imported.records)
    counts = imported.counts
    _say(f"{args.out}: {counts['requests']} requests, {counts['answers']} answers from "
         f"{imported.pcap.packets} packets; {len(imported.header.links)} device(s), units "
         f"{', '.join(map(str, imported.header.unit_ids)) or 'none'}")
    _say(f"  exceptions {counts['exceptions']}, malformed {counts['malformed']}, "
         f"unanswered {counts['unanswered']}, answers without request "
         f"{counts['without request']}, retransmissions dropped {imported.retransmissions}, "
         f"gaps {counts['gap events']}")
    if damaged:
        for line in damaged:
            print(f"edge-agent: {line}", file=sys.stderr, flush=True)
        return _fail(f"{args.out} was written, but holds less than the pcap did (exit "
                     f"status {EXIT_DAMAGED})", EXIT_DAMAGED)
    return EXIT_OK


def capture_check(args: argparse.Namespace) -> int:
    try:
        capture = read_capture(args.capture)
    except CaptureError as err:
        return _fail(str(err), EXIT_USAGE)
    header = capture.header
    _say(f"{args.capture}: capture format {header.version}, {header.recorded_with} "
         f"({header.tool}), started {header.started.isoformat()}")
    for link in header.links:
        counts = tally(capture.frames(link.name))
        _say(f"  {link.name} ({link.protocol}, {link.endpoint}): {counts['requests']} "
             f"requests, {counts['answers']} answers, {counts['exceptions']} exceptions, "
             f"{counts['malformed']} malformed, {counts['unanswered']} unanswered")
    return EXIT_OK


# -- replay ------------------------------------------------------------------------------


def replay(args: argparse.Namespace) -> int:
    if args.replay_command == "text":
        return _replay_text(args)
    try:
        script = load_script(read_capture(args.capture), args.link)
    except (CaptureError, ScriptError) as err:
        return _fail(str(err) if isinstance(err, CaptureError) else f"{args.capture}: {err}",
                     EXIT_USAGE)
    return asyncio.run(_run_replay(args, script))


def _responder(args: argparse.Namespace, script: Script) -> StrictReplay | ImageReplay:
    if args.mode == "strict":
        return StrictReplay(script)
    image = RegisterImage(script)
    return ImageReplay(image, RecordingClock(image.start_t, image.end_t, args.speed,
                                             loop=args.loop))


async def _run_replay(args: argparse.Namespace, script: Script) -> int:
    responder = _responder(args, script)
    stop, progress = _stop_event(), asyncio.Event()
    watched = _Watched(responder, lambda: asyncio.get_running_loop().call_soon(progress.set))
    pty = None
    try:
        if args.replay_command == "tcp":
            server: TcpReplayServer | RtuReplayServer = await TcpReplayServer(
                watched, *args.listen).start()
            where = f"Modbus TCP on {args.listen[0]}:{server.port}"
        else:
            path = args.port
            if args.pty:
                from edge_agent.tools.sim.ptypair import PtyPair

                pty = PtyPair()
                path = pty.device_path
            server = await RtuReplayServer(watched, path, baudrate=args.baud,
                                           parity=args.parity, stopbits=args.stopbits).start()
            where = f"Modbus RTU on {pty.agent_path if pty else path}"
    except (OSError, ValueError) as err:
        return _fail(f"cannot serve the replay: {err}", EXIT_LINK)
    count = len(script.exchanges)
    _say(f"replaying {args.capture} (link {script.link}, {count} request{'s' * (count != 1)}, "
         f"{args.mode} mode) as {where}; Ctrl-C stops")
    for line in served_lines(script):
        _say(line)
    strict = responder if isinstance(responder, StrictReplay) else None
    try:
        return await _until_finished(strict, lambda: responder.done, stop, progress)
    finally:
        await server.close()
        if pty is not None:
            pty.close()


def _replay_text(args: argparse.Namespace) -> int:
    from edge_agent.tools.replay.text import StrictTextReplay, load_text_script

    try:
        script = load_text_script(read_capture(args.capture), args.link)
    except (CaptureError, ScriptError) as err:
        return _fail(str(err) if isinstance(err, CaptureError) else f"{args.capture}: {err}",
                     EXIT_USAGE)
    return asyncio.run(_run_text_replay(args, StrictTextReplay(script)))


async def _run_text_replay(args: argparse.Namespace, replay: StrictTextReplay) -> int:
    from edge_agent.tools.replay.text_server import TextReplayServer
    from edge_agent.tools.sim.ptypair import PtyPair

    stop, progress = _stop_event(), asyncio.Event()
    pty = PtyPair() if args.pty else None
    try:
        server = await TextReplayServer(
            replay, pty.device_path if pty else args.port, baudrate=args.baud,
            parity=args.parity, stopbits=args.stopbits, bytesize=args.bytesize,
            speed=args.speed, changed=progress.set).start()
    except (OSError, ValueError) as err:
        if pty is not None:
            pty.close()
        return _fail(f"cannot serve the replay: {err}", EXIT_LINK)
    script = replay.script
    count = len(script.exchanges)
    _say(f"replaying {args.capture} (link {script.link}, {count} request{'s' * (count != 1)}, "
         f"{len(script.streamed)} streamed records, strict mode) as a text instrument on "
         f"{pty.agent_path if pty else args.port}; Ctrl-C stops")
    try:
        return await _until_finished(replay, lambda: server.finished, stop, progress)
    finally:
        await server.close()
        if pty is not None:
            pty.close()


async def _until_finished(strict: StrictReplay | StrictTextReplay | None,
                          finished: Callable[[], bool], stop: asyncio.Event,
                          progress: asyncio.Event) -> int:
    """Wait for Ctrl-C, or for a strict replay to complete (``finished``) or fail."""
    while not stop.is_set():
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(progress.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
        progress.clear()
        if strict is not None and strict.mismatches:
            return _fail(f"strict replay failed: {strict.mismatches[0]}", EXIT_MISMATCH)
        if strict is not None and finished():
            _say(f"strict replay complete: all {strict.served} recorded requests came "
                 "in order")
            # The last answer may still be in a socket buffer or a pty relay: closing at
            # once could cut it off before the master read it.
            await asyncio.sleep(LAST_ANSWER_LINGER_S)
            return EXIT_OK
    return EXIT_OK


class _Watched:
    """Passes requests to the responder and calls ``changed`` after each one, so the
    command can end when a strict replay completes or fails."""

    def __init__(self, responder: Responder, changed: Callable[[], None]) -> None:
        self._responder = responder
        self._changed = changed

    def respond(self, frame: bytes, protocol: str) -> Reply:
        reply = self._responder.respond(frame, protocol)
        self._changed()
        return reply
