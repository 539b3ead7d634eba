"""scripts/install and scripts/uninstall, run for real against a temporary root (the
``--root`` image builders use): the agent in its own virtual environment from a wheel of
the checkout, the unit, the user, the example station file.

Proved here: a second run changes nothing at all (every file, mode, owner and time as
before); an upgrade from a newer checkout replaces the agent and keeps a technician's
station file, the secrets file and the outbox byte for byte, and the new version reads
the buffered sample; uninstall keeps them; --purge removes them; the installed unit
passes ``systemd-analyze verify`` with no warning at all; an upgrade is made beside the
environment in use and switched to only when complete and checked (a failed pip or a
refused station file leave the one in use untouched, a second run completes it); the
secrets file is parsed as systemd reads it, never run, and the check runs as the
service's user.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.config.schema import MqttConfig, Retention
from edge_agent.model import Quality, Reading, Sample
from edge_agent.store.outbox import Outbox
from edge_agent.watchdog import stop_budget_s

# Every test here starts the agent or a tool as a real process.
pytestmark = pytest.mark.real_parts

REPO = Path(__file__).parent.parent
UNIT = REPO / "systemd" / "edge-agent.service"
VENV = "opt/edge-agent/venv"
AS_ROOT = os.geteuid() == 0


def install(checkout: Path, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(checkout / "scripts/install"), "--root", str(root),
                           "--no-systemctl"], capture_output=True, text=True, timeout=900)


def run(script: Path, *args: str) -> str:
    done = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{script.name} {args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def new_root(path: Path) -> Path:
    """A system's /etc as the installer finds it on Debian (dialout exists)."""
    (path / "etc").mkdir(parents=True)
    for name in ("passwd", "group"):
        shutil.copy(f"/etc/{name}", path / "etc" / name)
    return path


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything about every file under ``root`` that a change would alter."""
    seen: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            content = (os.readlink(path) if path.is_symlink()
                       else hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file()
                       else None)
            seen[str(path.relative_to(root))] = (info.st_mode, info.st_uid, info.st_gid,
                                                 info.st_size, info.st_mtime_ns, content)
    return seen


def digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode


def venv_python(root: Path, code: str) -> str:
    done = subprocess.run([str(root / VENV / "bin" / "python"), "-I", "-c", code],
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    root = new_root(tmp_path_factory.mktemp("install") / "root")
    output = run(REPO / "scripts" / "install", "--root", str(root), "--no-systemctl")
    assert "edge-agent 0.1" in output and f"installed in {root}" in output, output
    return root


def test_a_second_install_changes_nothing(installed):
    before = snapshot(installed)
    output = run(REPO / "scripts" / "install", "--root", str(installed), "--no-systemctl")
    assert "nothing changed" in output, output
    assert snapshot(installed) == before


def test_the_agent_runs_from_its_own_environment_with_the_example_station(installed):
    env = {**os.environ, "EDGE_AGENT_MQTT_PASSWORD": "secret"}
    station = installed / "etc/edge-agent/station.yaml"
    check = subprocess.run([str(installed / VENV / "bin/python"), "-I", "-m", "edge_agent",
                            "check", str(station)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert check.returncode == 0 and check.stdout.startswith("OK:"), check.stderr
    assert venv_python(installed, "import edge_agent; print(edge_agent.__file__)") \
        .startswith(str(installed / VENV)), "the wheel's copy, not this checkout's"
    assert station.read_bytes() == (REPO / "config/station.example.yaml").read_bytes()
    assert station.stat().st_mode & 0o777 == 0o640
    assert (installed / "etc/edge-agent/edge-agent.env").stat().st_mode & 0o777 == 0o600
    # Paths name /opt/edge-agent, where the image will have it, not the build root.
    # The scripts name their own environment, not the link: a running agent keeps
    # reading its own files when an upgrade switches the link.
    in_use = os.readlink(installed / VENV)
    assert re.fullmatch(r"venv-0\.1\.0-[0-9a-f]{12}", in_use), in_use
    script = (installed / VENV / "bin/edge-agent").read_text()
    assert script.startswith(f"#!/opt/edge-agent/{in_use}/bin/python\n")
    assert os.readlink(installed / "usr/local/bin/edge-agent") == \
        "/opt/edge-agent/venv/bin/edge-agent"
    assert (installed / "etc/systemd/system/edge-agent.service").read_bytes() == \
        UNIT.read_bytes()
    passwd = (installed / "etc/passwd").read_text()
    if AS_ROOT:
        assert re.search(r"^edge-agent:x:\d+:\d+:.*:/var/lib/edge-agent:/usr/sbin/nologin$",
                         passwd, re.MULTILINE), passwd
        dialout = next(line for line in (installed / "etc/group").read_text().splitlines()
                       if line.startswith("dialout:"))
        assert "edge-agent" in dialout.split(":")[3].split(",")
    else:
        assert "edge-agent:" not in passwd  # created at the image's first boot instead


def test_the_installed_unit_passes_systemd_analyze_verify(installed, tmp_path):
    """Verified in a root of its own holding what the unit refers to: the host's units
    (network-online.target, ...), /bin/kill, and the installed agent."""
    verify_root = tmp_path / "verify"
    units = next(Path(p) for p in ("/usr/lib/systemd/system", "/lib/systemd/system")
                 if Path(p).is_dir())
    shutil.copytree(units, verify_root / "usr/lib/systemd/system", symlinks=True)
    for path in ("etc/systemd/system/edge-agent.service",
                 f"{VENV}/bin/edge-agent"):
        (verify_root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(installed / path, verify_root / path)
    (verify_root / "bin").mkdir()
    shutil.copy2(shutil.which("kill") or "/bin/kill", verify_root / "bin/kill")
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={verify_root}",
                           "edge-agent.service"], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown settings too: any line it prints is a failure here.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_unit_gives_a_clean_stop_the_time_the_agent_asks_for():
    unit = UNIT.read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.MULTILINE))
    assert settings["Type"] == "notify" and int(settings["WatchdogSec"]) > 0
    default = MqttConfig(host="x")
    assert int(settings["TimeoutStopSec"]) == stop_budget_s(default)


def test_the_unit_caps_the_malloc_arenas_of_the_agent_threads():
    """Two glibc arenas for the agent's threads, not one per thread (issue 11, RSS);
    Environment= comes before EnvironmentFile=, so the env file can still change it."""
    unit = UNIT.read_text()
    assert re.search(r"^Environment=MALLOC_ARENA_MAX=2$", unit, re.MULTILINE)
    assert unit.index("Environment=MALLOC_ARENA_MAX") < unit.index("EnvironmentFile=")


def copy_of(installed: Path, destination: Path) -> Path:
    """A fresh install of this version, as the upgrade tests start from: a copy of the
    module's ``installed`` root (owners, modes, times and links kept). The installed
    environment names /opt/edge-agent, never its build root, so it works from the copy;
    installing again would cost a pip run (most of a minute on a busy two-core CI)."""
    subprocess.run(["cp", "-a", str(installed), str(destination)], check=True, timeout=120)
    return destination


def copy_checkout(destination: Path) -> Path:
    shutil.copytree(REPO, destination, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "build", "dist", "*.egg-info", ".pytest_cache",
        ".ruff_cache", "*.sqlite3*"))
    return destination


def bump_version(checkout: Path, old: str, new: str) -> None:
    for relative, pattern in (("pyproject.toml", 'version = "{}"'),
                              ("edge_agent/__init__.py", '__version__ = "{}"')):
        path = checkout / relative
        text = path.read_text()
        assert pattern.format(old) in text, relative
        path.write_text(text.replace(pattern.format(old), pattern.format(new), 1))


def test_upgrade_keeps_station_file_secrets_and_outbox_uninstall_too_purge_does_not(
        installed, tmp_path):
    checkout = copy_checkout(tmp_path / "checkout")
    root = copy_of(installed, tmp_path / "root")
    version = venv_python(root, "import edge_agent; print(edge_agent.__version__)")

    station = root / "etc/edge-agent/station.yaml"
    secrets = root / "etc/edge-agent/edge-agent.env"
    station.write_text(station.read_text() + "# tuned on site by the technician\n")
    secrets.write_text("EDGE_AGENT_MQTT_PASSWORD=on-site\n")
    outbox_path = root / "var/lib/edge-agent/outbox.sqlite3"
    at = datetime.now(UTC)
    outbox = Outbox(outbox_path, Retention())
    outbox.append(Sample("h2s-1", at, (Reading("h2s-1", "h2s", 1.5, "ppm", Quality.GOOD,
                                                at),)))
    outbox.close()  # a sample buffered, not yet delivered
    kept = {path: digest(path) for path in (station, secrets, outbox_path)}

    bump_version(checkout, version, "99.0.0")
    output = run(checkout / "scripts/install", "--root", str(root), "--no-systemctl")
    assert "edge-agent 99.0.0 installed" in output, output
    assert venv_python(root, "from importlib.metadata import version; "
                              "print(version('edge-agent'))") == "99.0.0"
    assert {path: digest(path) for path in kept} == kept
    # The new version finds the buffered sample in the outbox the old one left.
    assert venv_python(root, f"""
from edge_agent.config.schema import Retention
from edge_agent.store.outbox import Outbox
box = Outbox({str(outbox_path)!r}, Retention())
print(box.stats().samples)
box.close()""") == "1"
    kept = {path: digest(path) for path in kept}

    output = run(checkout / "scripts/uninstall", "--root", str(root), "--no-systemctl")
    assert "kept /var/lib/edge-agent" in output and "kept /etc/edge-agent" in output, output
    assert {path: digest(path) for path in kept} == kept
    for gone in (VENV, "etc/systemd/system/edge-agent.service", "usr/local/bin/edge-agent",
                 "usr/local/lib/sysusers.d/edge-agent.conf"):
        assert not (root / gone).exists() and not (root / gone).is_symlink(), gone

    run(checkout / "scripts/uninstall", "--root", str(root), "--no-systemctl", "--purge")
    assert not (root / "etc/edge-agent").exists()
    assert not (root / "var/lib/edge-agent").exists()


def test_the_installer_refuses_unknown_arguments():
    done = subprocess.run([str(REPO / "scripts/install"), "--frobnicate"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "unknown argument: --frobnicate" in done.stderr


AS_SERVICE = REPO / "scripts/as-service.py"


def test_the_secrets_file_is_parsed_as_systemd_reads_it_never_run(tmp_path):
    """EnvironmentFile= is not a shell script: what systemd would pass reaches the
    command whole, and nothing in the file runs."""
    ran = tmp_path / "ran"
    (tmp_path / "edge-agent.env").write_text(
        f"EDGE_AGENT_MQTT_PASSWORD=s3cret touch {ran}\n"
        f"# COMMENTED=1\n; ALSO_COMMENTED=1\n"
        f"  SPACED  =  a  b  \n"
        f"SINGLE='$(touch {ran}) \\n'\n"
        f'DOUBLE="x\\"y\\$HOME\\q"\n'
        f"JOINED=one\\\ntwo\n"
        f"QUOTED_IN_VALUE=it's \"so\"\n"
        f"EXPANDED=$HOME`touch {ran}`\n"
        f"export EXPORTED=1\nNO_EQUALS\n9BAD=1\nEMPTY=\nLAST=no newline  ")
    show = "import json, os; print(json.dumps(dict(os.environ)))"
    done = subprocess.run(
        ["python3", "-I", str(AS_SERVICE), "--env-file", str(tmp_path / "edge-agent.env"),
         "--set", "STATE_DIRECTORY=/var/lib/edge-agent", "--", "python3", "-c", show],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "LEAKED": "from the caller"})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert not ran.exists()
    assert {key: seen[key] for key in seen if key not in ("PATH", "LANG")} == {
        "EDGE_AGENT_MQTT_PASSWORD": f"s3cret touch {ran}",
        "SPACED": "a  b",
        "SINGLE": f"$(touch {ran}) \\n",
        "DOUBLE": 'x"y$HOME\\q',
        "JOINED": "onetwo",
        "QUOTED_IN_VALUE": "it's \"so\"",
        "EXPANDED": f"$HOME`touch {ran}`",
        "EMPTY": "",
        "LAST": "no newline",
        "STATE_DIRECTORY": "/var/lib/edge-agent",
    }


def test_the_check_runs_as_the_service_user():
    """A file only root may read (a TLS key of mode 0600) fails the check as it will
    fail the service; root's check would have passed it."""
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)
        key = folder / "client.key"
        key.write_text("secret")
        key.chmod(0o600)
        done = subprocess.run(
            ["python3", "-I", str(AS_SERVICE), "--user", "nobody", "--",
             "/bin/sh", "-c", f'id -u; echo "$HOME $USER"; cat {key} || echo unreadable'],
            capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(folder)
    assert done.stdout.splitlines() == ["65534", "/nonexistent nobody", "unreadable"], \
        (done.stdout, done.stderr)


def test_an_upgrade_is_made_beside_the_agent_in_use_and_switched_only_once_checked(
        installed, tmp_path):
    """The new version's environment is made beside the one in use and the link
    switched to it only when it is complete and accepts the station file (the service
    is enabled in this root); a failed pip or a refused check leave the one in use as
    it was, and running the installer again after a refusal completes the upgrade."""
    checkout = copy_checkout(tmp_path / "checkout")
    root = copy_of(installed, tmp_path / "root")
    first = os.readlink(root / VENV)
    version = venv_python(root, "import edge_agent; print(edge_agent.__version__)")
    wants = root / "etc/systemd/system/multi-user.target.wants/edge-agent.service"
    wants.parent.mkdir(parents=True)
    wants.symlink_to("/etc/systemd/system/edge-agent.service")  # systemctl enable
    ran = tmp_path / "ran"
    (root / "etc/edge-agent/edge-agent.env").write_text(
        f"EDGE_AGENT_MQTT_PASSWORD=s3cret touch {ran}\n")
    in_use = snapshot(root / "opt/edge-agent" / first)

    # 1. pip fails (a dependency that cannot be installed): nothing switched, nothing left.
    pyproject = checkout / "pyproject.toml"
    good = pyproject.read_text()
    pyproject.write_text(good.replace(
        "dependencies = [\n",
        f'dependencies = [\n    "broken @ file://{tmp_path}/broken-1.0-py3-none-any.whl",\n',
        1))
    bump_version(checkout, version, "99.0.0")
    done = install(checkout, root)
    assert done.returncode != 0 and "venv is unchanged" in done.stderr, done
    assert os.readlink(root / VENV) == first
    assert sorted(p.name for p in (root / "opt/edge-agent").glob("venv*")) == \
        ["venv", first]
    assert snapshot(root / "opt/edge-agent" / first) == in_use

    # 2. The new version rejects the station file: not switched.
    pyproject.write_text(pyproject.read_text().replace(
        f'    "broken @ file://{tmp_path}/broken-1.0-py3-none-any.whl",\n', ""))
    station = root / "etc/edge-agent/station.yaml"
    fine = station.read_text()
    station.write_text(fine + "no_such_setting: 1\n")
    done = install(checkout, root)
    assert done.returncode == 1 and "NOT switched" in done.stdout, done
    assert "no_such_setting: unknown setting" in done.stderr, done.stderr
    assert "password_env" not in done.stderr, "the password reaches the check"
    assert os.readlink(root / VENV) == first
    assert snapshot(root / "opt/edge-agent" / first) == in_use
    assert not ran.exists()

    # 3. Fixed: the same command completes the upgrade, the previous one kept.
    station.write_text(fine)
    output = run(checkout / "scripts/install", "--root", str(root), "--no-systemctl")
    second = os.readlink(root / VENV)
    assert second.startswith("venv-99.0.0-") and f"(was {first}" in output, output
    assert venv_python(root, "import edge_agent; print(edge_agent.__version__)") == "99.0.0"
    assert snapshot(root / "opt/edge-agent" / first) == in_use
    assert not ran.exists()

    # 4. One more: the one before the previous goes.
    bump_version(checkout, "99.0.0", "100.0.0")
    run(checkout / "scripts/install", "--root", str(root), "--no-systemctl")
    third = os.readlink(root / VENV)
    assert third.startswith("venv-100.0.0-")
    assert sorted(p.name for p in (root / "opt/edge-agent").glob("venv*")) == \
        sorted(["venv", second, third])
