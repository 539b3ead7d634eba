"""The one door from the runtime to the tools (edge_agent/tools/): the runtime names a
tool by module, and loads it only when it is wanted. So ``edge-agent run`` and ``check``
start without any tool, or what only tools need (dpkt), and a tool can change without
the runtime noticing.

What passes through it: the tool commands of the command line (``TOOL_COMMANDS``, used
by cli.py), and the recorder of a link's traffic (``record_link``: a ``WireTap`` that
the poller gives the link's client when the link has a ``record:`` file).
tests/test_runtime_imports.py fails when a runtime module reaches a tool any other way:
an import, a function-level one included, or a tool's module name outside this file.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from edge_agent.config.schema import Link
from edge_agent.link import WireTap


@dataclass(frozen=True)
class ToolCommand:
    """An ``edge-agent`` command that a tool provides, as ``module:function`` references
    (see ``load``): its argument module adds its parser, the runner gets the parsed
    arguments and returns the exit status."""

    add_parser: str  # f(subparsers) -> None
    run: str  # f(argparse.Namespace) -> int


# In the order ``edge-agent --help`` lists them, after ``run`` and ``check``.
TOOL_COMMANDS: dict[str, ToolCommand] = {
    "demo": ToolCommand("edge_agent.tools.demo.arguments:add_demo_parser",
                        "edge_agent.tools.demo.arguments:run_demo_command"),
    "status": ToolCommand("edge_agent.tools.ops.arguments:add_status_parser",
                          "edge_agent.tools.ops.status:run_status"),
    "export": ToolCommand("edge_agent.tools.ops.arguments:add_export_parser",
                          "edge_agent.tools.ops.export:run_export"),
    "poll": ToolCommand("edge_agent.tools.poll.arguments:add_poll_parser",
                        "edge_agent.tools.poll.command:run_poll"),
    "probe": ToolCommand("edge_agent.tools.probe.arguments:add_probe_parser",
                         "edge_agent.tools.probe.command:run_probe"),
    "capture": ToolCommand("edge_agent.tools.capture.arguments:add_capture_parser",
                           "edge_agent.tools.capture.commands:run_capture"),
    "replay": ToolCommand("edge_agent.tools.replay.arguments:add_replay_parser",
                          "edge_agent.tools.capture.commands:run_replay"),
    "simulate": ToolCommand("edge_agent.tools.sim.arguments:add_simulate_parser",
                            "edge_agent.tools.sim.simulate:run_simulate"),
    "hj212-platform": ToolCommand(
        "edge_agent.tools.hj212platform.arguments:add_hj212_platform_parser",
        "edge_agent.tools.hj212platform.arguments:run_hj212_platform"),
    "sparkplug-host": ToolCommand(
        "edge_agent.tools.sparkplughost.arguments:add_sparkplughost_parser",
        "edge_agent.tools.sparkplughost.command:run_host"),
}

# Builds the recorder of one link: f(Link) -> WireTap.
LINK_RECORDER = "edge_agent.tools.capture.recorder:LinkRecorder.for_link"


def record_link(link: Link) -> WireTap | None:
    """The tap that records ``link``'s traffic into its ``record:`` capture file; None
    when it has none. The recorder (a tool) is loaded only then."""
    if link.record is None:
        return None
    tap: WireTap = load(LINK_RECORDER)(link)
    return tap


def load(reference: str) -> Any:
    """The object ``module:attribute`` (dotted attributes allowed) names, its module
    imported now. A wrong name is a bug in this table: it raises."""
    module_name, _, attribute = reference.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found
