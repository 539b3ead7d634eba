"""The runtime (edge_agent/ but edge_agent/tools/, and drivers/) never imports a tool: it
reaches one only by module name through edge_agent/toolbox.py, when a tool command runs or
a link records. Recording is a tap the poller gives the link's client; which client a link
gets is decided above the clients (link_clients.py), so link.py imports none of them."""

from __future__ import annotations

import argparse
import ast
import inspect
import threading
from datetime import datetime
from pathlib import Path

from edge_agent_drivers.modbus.settings import Channel, ModbusSettings
from support import sources
from support.waiting import wait_until

from edge_agent import cli, toolbox
from edge_agent.config.schema import Device, PollingPolicy, Retention, TcpLink
from edge_agent.model import Quality, Reading, Sample
from edge_agent.poller import LinkPoller
from edge_agent.store.outbox import Outbox

ROOT = Path(__file__).resolve().parents[1]
TOOLS = "edge_agent.tools"
TOOLBOX = ROOT / "edge_agent" / "toolbox.py"


def runtime_modules() -> list[Path]:
    """Every module of the runtime: edge_agent/ outside tools/, and the drivers."""
    tools = ROOT / "edge_agent" / "tools"
    agent = [p for p in (ROOT / "edge_agent").rglob("*.py") if tools not in p.parents]
    return sorted(agent + list((ROOT / "drivers").rglob("*.py")))


def _package_of(path: Path) -> list[str]:
    """The dotted package a module file is in (drivers/ installs as edge_agent_drivers)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "drivers":
        parts[0] = "edge_agent_drivers"
    return parts[:-1]


def _is_tool(name: str) -> bool:
    return name == TOOLS or name.startswith(TOOLS + ".")


def tool_references(path: Path, source: str | None = None,
                    allow_names: bool = False) -> list[str]:
    """Every way ``source`` (the module at ``path``; its file's text when None) reaches a
    tool: an import anywhere in it (function-level ones too, relative ones resolved), and,
    unless ``allow_names``, a string naming a tool module (what importlib would be given)."""
    found = []
    kinds = (*sources.IMPORTS, ast.Constant)
    for node in (sources.nodes(path, *kinds) if source is None
                 else ast.walk(ast.parse(source, str(path)))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(path)[: len(_package_of(path)) - node.level + 1]
                base = ".".join([*package, *([base] if base else [])])
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and not allow_names):
            names = [node.value.partition(":")[0]]
        found += [f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
                  for name in names if _is_tool(name)]
    return found


def test_no_runtime_module_reaches_a_tool_but_through_the_toolbox():
    modules = runtime_modules()
    assert ROOT / "edge_agent" / "poller.py" in modules
    assert ROOT / "edge_agent" / "cli.py" in modules
    assert not any("tools" in p.relative_to(ROOT).parts for p in modules)
    found = [ref for path in modules
             for ref in tool_references(path, allow_names=path == TOOLBOX)]
    assert found == []


def test_the_toolbox_names_tools_but_imports_none():
    source = TOOLBOX.read_text()
    assert tool_references(TOOLBOX, source, allow_names=True) == []
    assert tool_references(TOOLBOX, source) != []  # the names it keeps


def test_the_check_finds_every_way_to_reach_a_tool():
    """A reference hidden in a function, relative, or a name for importlib is still found."""
    path = ROOT / "edge_agent" / "agent.py"
    source = """
import importlib
import edge_agent.tools.sim
from edge_agent import tools
from edge_agent.config import schema

def record(link):
    from edge_agent.tools.capture.recorder import LinkRecorder
    from .tools.probe import command
    return importlib.import_module("edge_agent.tools.replay.serve")
"""
    found = tool_references(path, source)
    assert [ref.split(": ")[1] for ref in found] == [
        "edge_agent.tools.sim", "edge_agent.tools", "edge_agent.tools.capture.recorder",
        "edge_agent.tools.capture.recorder.LinkRecorder", "edge_agent.tools.probe",
        "edge_agent.tools.probe.command", "edge_agent.tools.replay.serve"]


def test_every_tool_the_toolbox_names_loads():
    for name, command in toolbox.TOOL_COMMANDS.items():
        assert callable(toolbox.load(command.add_parser)), name
        assert callable(toolbox.load(command.run)), name
    assert callable(toolbox.load(toolbox.LINK_RECORDER))


def test_link_imports_no_protocol_client():
    """The base module of the clients imports none of them (no base/subclass cycle)."""
    path = ROOT / "edge_agent" / "link.py"
    imported = [node.module for node in sources.nodes(path, ast.ImportFrom)
                if isinstance(node, ast.ImportFrom)]
    assert "edge_agent.config.schema" in imported
    assert not [m for m in imported if m and m.startswith(("edge_agent_drivers.modbus.protocol",
                                                           "edge_agent_drivers.serialtext.protocol"))]


def test_a_link_without_record_gets_no_recorder(tmp_path):
    assert toolbox.record_link(TcpLink("lan", "127.0.0.1", 9)) is None
    recorder = toolbox.record_link(TcpLink("lan", "127.0.0.1", 9,
                                           record=tmp_path / "lan.capture.jsonl"))
    assert type(recorder).__module__ == "edge_agent.tools.capture.recorder"
    assert recorder.finish()


class TapSeen:
    """A tap that remembers what it was shown."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def opened(self) -> None:
        self.calls.append("opened")

    def sent(self, data: bytes) -> None:
        self.calls.append("sent")

    def received(self, data: bytes) -> None:
        self.calls.append("received")

    def closed(self) -> None:
        self.calls.append("closed")

    def finish(self) -> None:
        self.calls.append("finish")


class ClientSeen:
    """A driver that keeps the link client its poller hands it."""

    device = Device("dev", "lan", 1, 0.01, ModbusSettings((Channel("v", 0),)))

    def __init__(self) -> None:
        self.clients: list[object] = []

    def poll(self, link, now: datetime) -> Sample:
        self.clients.append(link)
        return Sample("dev", now, (Reading("dev", "v", 1, "", Quality.GOOD, now),))

    def failed_sample(self, now: datetime, reason: str) -> Sample:
        return Sample("dev", now, (Reading("dev", "v", None, "", Quality.BAD, now, reason),))


def test_poller_gives_the_link_client_the_tap_it_was_given(tmp_path):
    link = TcpLink("lan", "127.0.0.1", 9)
    tap, asked = TapSeen(), []

    def open_tap(wanted):
        asked.append(wanted)
        return tap

    driver = ClientSeen()
    outbox = Outbox(tmp_path / "o.sqlite3", Retention(None, None, None))
    stop = threading.Event()
    poller = LinkPoller(link, [driver], outbox, PollingPolicy(), stop, open_tap=open_tap)
    poller.start()
    try:
        wait_until(lambda: driver.clients, 30, "a poll")
    finally:
        assert poller.stop(timeout_s=30)
        outbox.close()
    assert asked == [link]
    assert driver.clients[0].tap is tap
    assert tap.calls[-1] == "finish"  # the recording ends when the poller closes the link


def test_the_agent_records_links_through_the_toolbox():
    """The agent's pollers (built without ``open_tap``) record what ``record:`` asks for."""
    default = inspect.signature(LinkPoller).parameters["open_tap"].default
    assert default is toolbox.record_link


def test_the_command_word_is_found_after_the_global_options():
    assert cli._command_word(["--log-level", "debug", "capture", "proxy"]) == "capture"
    assert cli._command_word(["--log", "debug", "replay", "tcp", "x"]) == "replay"
    assert cli._command_word(["--log-level=debug", "run", "station.yaml"]) == "run"
    assert cli._command_word(["-h", "capture"]) is None  # the main help: every command
    assert cli._command_word(["--version"]) is None
    assert cli._command_word([]) is None


def test_help_lists_every_tool_command_and_run_builds_none():
    def commands(parser: argparse.ArgumentParser) -> list[str]:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return list(sub.choices)

    assert commands(cli._parser(None)) == ["run", "check", *toolbox.TOOL_COMMANDS]
    assert commands(cli._parser("bogus")) == ["run", "check", *toolbox.TOOL_COMMANDS]
    assert commands(cli._parser("run")) == ["run", "check"]
    assert commands(cli._parser("probe")) == ["run", "check", "probe"]
