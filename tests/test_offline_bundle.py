"""scripts/bundle, for real: the bundle is built (this needs the package index, as on the
office machine), unpacked and installed into a ``--root`` with every index pip could use
unreachable (the index URL a closed local port, no config files, no find-links), as on a
station without network. The installed agent names its version and commit and accepts
the example station file; the installer's files are made without following links.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest

from edge_agent import __version__
from edge_agent.provenance import git_commit

# Every test here starts real processes (builds, installers, the agent).
pytestmark = pytest.mark.real_parts

REPO = Path(__file__).parent.parent
VENV = "opt/edge-agent/venv"


def closed_port() -> int:
    """A local port nothing listens on (bound, then released: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_env() -> dict[str, str]:
    """pip as on a station with no route out: any index it tried would refuse it."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PIP_") and not key.lower().endswith("_proxy")}
    dead = f"http://127.0.0.1:{closed_port()}"
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=f"{dead}/simple",
               PIP_RETRIES="0", PIP_TIMEOUT="2", http_proxy=dead, https_proxy=dead)
    return env


def run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(arg) for arg in args], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The unpacked bundle for this machine's Python and architecture."""
    out = tmp_path_factory.mktemp("dist")
    output = run(REPO / "scripts/bundle", "--out", out)
    made = sorted(out.glob("edge-agent-*.tar.gz"))
    assert len(made) == 1 and f"wrote {made[0]}" in output, output
    assert re.fullmatch(r"edge-agent-[0-9.]+-py3\d+-(amd64|arm64)\.tar\.gz", made[0].name)
    with tarfile.open(made[0]) as archive:
        archive.extractall(out, filter="data")
    return out / made[0].name.removesuffix(".tar.gz")


def test_the_bundle_lists_the_sha256_of_every_file_it_holds(bundle):
    listed = {line.split("  ", 1)[1]
              for line in (bundle / "SHA256SUMS").read_text().splitlines()}
    held = {str(path.relative_to(bundle)) for path in bundle.rglob("*")
            if path.is_file() and path.name != "SHA256SUMS"}
    assert listed == held
    done = subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=bundle,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = {path.name.split("-")[0].lower() for path in (bundle / "wheels").glob("*.whl")}
    assert {"edge_agent", "pymodbus", "pyserial", "paho_mqtt", "pyyaml", "sqlite_utils",
            "tenacity", "dpkt"} <= wheels


def test_the_bundle_installs_with_no_index_reachable_and_the_agent_runs(bundle, tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group"):
        (root / "etc" / name).write_bytes(Path("/etc", name).read_bytes())
    outside = tmp_path / "outside"
    outside.mkdir()
    # A link left where the secrets file goes, to a file that does not exist: the
    # installer must not create that file through it (it would land outside the root).
    (root / "etc/edge-agent").mkdir()
    (root / "etc/edge-agent/edge-agent.env").symlink_to(outside / "secrets")

    output = run(bundle / "install", "--root", root, "--no-systemctl", env=offline_env())
    assert "installed in" in output and "the wheel in" in output, output
    assert "left alone: /etc/edge-agent/edge-agent.env is a link to" in output, output
    assert list(outside.iterdir()) == []
    assert os.readlink(root / "etc/edge-agent/edge-agent.env") == str(outside / "secrets")
    station = root / "etc/edge-agent/station.yaml"
    assert station.read_bytes() == (REPO / "config/station.example.yaml").read_bytes()
    assert station.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in station.parent.iterdir() if p.name.startswith(".")] == []

    # Same paths as scripts/install from a checkout.
    assert re.fullmatch(r"venv-[0-9.]+-[0-9a-f]{12}", os.readlink(root / VENV))
    assert os.readlink(root / "usr/local/bin/edge-agent") == \
        "/opt/edge-agent/venv/bin/edge-agent"
    assert (root / "etc/systemd/system/edge-agent.service").read_bytes() == \
        (REPO / "systemd/edge-agent.service").read_bytes()

    python = root / VENV / "bin/python"
    version = run(python, "-I", "-m", "edge_agent", "--version")
    assert version == f"edge-agent {__version__} (commit {git_commit(REPO)})\n", \
        "the bundle names the commit of the checkout it came from"
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?", git_commit(REPO)), "a git checkout"
    assert (bundle / "VERSION").read_text().startswith(version.strip())
    check = run(python, "-I", "-m", "edge_agent", "check", station,
                env={**offline_env(), "EDGE_AGENT_MQTT_PASSWORD": "secret"})
    assert check.startswith("OK:"), check

    # Once the link is gone, the next run writes the template, mode 0600 from the start.
    (root / "etc/edge-agent/edge-agent.env").unlink()
    again = run(bundle / "install", "--root", root, "--no-systemctl", env=offline_env())
    assert "wrote /etc/edge-agent/edge-agent.env (template)" in again, again
    assert (root / "etc/edge-agent/edge-agent.env").stat().st_mode & 0o777 == 0o600
    assert "venv ->" not in again, "the same bundle again: the agent is left as it was"


def test_a_bundle_for_another_python_or_machine_is_refused_before_anything_is_made(
        bundle, tmp_path):
    target = bundle / "wheels/TARGET"
    built_for = target.read_text()
    target.write_text("python=3.99 machine=sparc64\n")
    try:
        done = subprocess.run([str(bundle / "install"), "--root", str(tmp_path / "root"),
                               "--no-systemctl"], capture_output=True, text=True,
                              timeout=120, env=offline_env())
    finally:
        target.write_text(built_for)
    assert done.returncode == 1
    assert "these wheels are for python=3.99 machine=sparc64" in done.stderr, done.stderr
    assert not (tmp_path / "root/opt").exists()
