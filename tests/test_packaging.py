"""The package list in pyproject.toml is written by hand: prove it misses nothing, so a
non-editable install (the installer's) never lacks a module the editable one has."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_package_folder_is_listed_in_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    folders = {"edge_agent": ROOT / "edge_agent", "edge_agent_drivers": ROOT / "drivers"}
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            found.add(".".join((name, *relative)))
    assert found - listed == set(), "add these to [tool.setuptools] packages"


def test_every_shipped_profile_is_package_data():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["edge_agent_drivers"]
    drivers = ROOT / "drivers"
    shipped = {path for pattern in patterns for path in drivers.glob(pattern)}
    for profile in list(drivers.glob("*/profile.yaml")) + list(drivers.glob("*/profiles/*.yaml")):
        assert profile in shipped, profile.relative_to(drivers)


def test_every_file_of_the_page_is_package_data():
    """The technician's page is static files beside health/page.py: a wheel (and so the
    .deb and the offline bundle, which install the wheel) without one serves a 500."""
    from edge_agent.health import page

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["edge_agent.health"]
    health = ROOT / "edge_agent" / "health"
    shipped = {path for pattern in patterns for path in health.glob(pattern)}
    served = {health / "page" / name for name, _type in page.FILES.values()}
    assert served <= shipped, sorted(str(p.relative_to(health)) for p in served - shipped)
    assert set((health / "page").iterdir()) <= shipped  # nothing there left out


# Each third-party library of the agent is imported in exactly one module of ours, so an
# API change between versions touches one file (the rule in docs and style guide);
# pymodbus in one module per side: the client the pollers use, the simulator's server.
ONE_MODULE_PER_LIBRARY = {
    "pymodbus": ("drivers/modbus/protocol/pymodbus_client.py",
                 "drivers/modbus/protocol/pymodbus_server.py"),
    # paho: the agent's session, and the Sparkplug host simulator's (a retained will, a
    # whole-namespace subscription and commands: what the agent's session does not do).
    "paho": ("edge_agent/forward/mqtt.py", "edge_agent/tools/sparkplughost/mqttlink.py"),
    # protobuf: the generated Sparkplug classes, and the one module that decodes with them.
    "google.protobuf": ("edge_agent/sparkplug/sparkplug_b_pb2.py",
                        "edge_agent/sparkplug/decode.py"),
    "yaml": ("edge_agent/config/yamlsource.py",),
    "sqlite_utils": ("edge_agent/store/schema.py",),
    "tenacity": ("edge_agent/retry.py",),
    "serial": ("edge_agent/serialports.py",),
}


def test_each_library_is_imported_in_exactly_one_module():
    import re

    sources = list((ROOT / "edge_agent").rglob("*.py")) + list((ROOT / "drivers").rglob("*.py"))
    for library, owners in ONE_MODULE_PER_LIBRARY.items():
        pattern = re.compile(rf"^\s*(import {library}\b|from {library}(\.| ))", re.MULTILINE)
        importers = sorted(str(path.relative_to(ROOT)) for path in sources
                           if pattern.search(path.read_text()))
        assert importers == sorted(owners), f"{library} imported by {importers}"
