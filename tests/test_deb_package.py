"""packaging/build-deb, for real: the package is built from the checkout, lintian finds
no error in it, and (as root, as CI runs) dpkg installs it on this machine, upgrades it to
a newer build whose example station file changed while the station's copy was edited in
place, removes it and purges it: the edit survives the upgrade, a remove keeps the
station file and the outbox, only a purge deletes the outbox. Everything the test put on
the machine is gone afterwards (package, user, files).

Without root, dpkg cannot install anything: the package's contents are checked instead,
the agent run from the unpacked package and its conffiles compared between the builds.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent import __version__
from edge_agent.provenance import git_commit

# Every test here starts real processes (builds, installers, the agent).
pytestmark = pytest.mark.real_parts

REPO = Path(__file__).parent.parent
AS_ROOT = os.geteuid() == 0
# What the package puts on the machine, besides files dpkg lists.
PLACES = (Path("/opt/edge-agent"), Path("/etc/edge-agent"), Path("/var/lib/edge-agent"))
STATION = Path("/etc/edge-agent/station.yaml")
OUTBOX = Path("/var/lib/edge-agent/outbox.sqlite3")
CHANGED_EXAMPLE = "# example changed in 99.0.0\n"


def run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(arg) for arg in args], capture_output=True, text=True,
                          timeout=600, cwd=cwd,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def start_build(checkout: Path, out: Path) -> tuple[subprocess.Popen, Path]:
    process = subprocess.Popen([str(checkout / "packaging/build-deb"), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, out


def finish_build(process: subprocess.Popen, out: Path) -> Path:
    output, _ = process.communicate(timeout=600)
    made = sorted(out.glob("edge-agent_*.deb"))
    assert process.returncode == 0 and len(made) == 1 and f"wrote {made[0]}" in output, \
        output
    return made[0]


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> tuple[Path, Path]:
    """This checkout's package, and a build of 99.0.0 whose example station file
    differs; built side by side (most of a build is waiting for pip)."""
    checkout = tmp_path_factory.mktemp("newer") / "checkout"
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "build", "dist", "*.egg-info", ".pytest_cache",
        ".ruff_cache", "*.sqlite3*", "_build_info.py"))
    for relative, text in (("pyproject.toml", 'version = "{}"'),
                           ("edge_agent/__init__.py", '__version__ = "{}"')):
        path = checkout / relative
        path.write_text(path.read_text().replace(text.format(__version__),
                                                 text.format("99.0.0"), 1))
    example = checkout / "config/station.example.yaml"
    example.write_text(example.read_text() + CHANGED_EXAMPLE)
    builds = [start_build(REPO, tmp_path_factory.mktemp("deb")),
              start_build(checkout, tmp_path_factory.mktemp("deb-newer"))]
    try:
        old, new = (finish_build(*build) for build in builds)
    finally:
        for process, _ in builds:
            if process.poll() is None:
                process.kill()
                process.wait()
    return old, new


@pytest.fixture(scope="module")
def package(packages) -> Path:
    return packages[0]


@pytest.fixture(scope="module")
def newer_package(packages) -> Path:
    return packages[1]


def test_the_package_is_named_for_version_and_architecture_and_lintian_finds_no_error(
        package):
    arch = run("dpkg", "--print-architecture").strip()
    assert package.name == f"edge-agent_{__version__}_{arch}.deb"
    done = subprocess.run(["lintian", "--fail-on", "error", str(package)],
                          capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stdout.splitlines() if line.startswith("E:")]
    assert done.returncode == 0 and errors == [], done.stdout + done.stderr


def test_the_package_holds_the_agent_its_unit_and_a_sha256_list_of_everything(
        package, tmp_path):
    run("dpkg-deb", "--extract", package, tmp_path)
    sums = tmp_path / "usr/share/doc/edge-agent/SHA256SUMS"
    listed = {line.split("  ", 1)[1] for line in sums.read_text().splitlines()}
    held = {str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")
            if path.is_file() and not path.is_symlink() and path != sums}
    assert listed == held
    run("sha256sum", "--check", "--quiet", sums, cwd=tmp_path)
    assert (tmp_path / "usr/lib/systemd/system/edge-agent.service").read_bytes() == \
        (REPO / "systemd/edge-agent.service").read_bytes()
    assert (tmp_path / "usr/lib/sysusers.d/edge-agent.conf").read_bytes() == \
        (REPO / "systemd/edge-agent.sysusers").read_bytes()
    assert (tmp_path / "usr/lib/modules-load.d/edge-agent.conf").is_file()
    assert os.readlink(tmp_path / "usr/bin/edge-agent") == \
        "/opt/edge-agent/venv/bin/edge-agent"
    assert (tmp_path / "opt/edge-agent/venv/bin/edge-agent").read_text().startswith(
        "#!/opt/edge-agent/venv/bin/python\n")
    assert not list(tmp_path.rglob("__pycache__")), "byte code is made by postinst"
    conffiles = run("dpkg-deb", "--info", package, "conffiles").split()
    assert conffiles == ["/etc/edge-agent/edge-agent.env", "/etc/edge-agent/station.yaml"]
    changelog = gzip.decompress(
        (tmp_path / "usr/share/doc/edge-agent/changelog.gz").read_bytes()).decode()
    assert f"Built from commit {git_commit(REPO)}." in changelog
    # The environment runs from wherever it is unpacked: the agent inside it, as built.
    python = tmp_path / "opt/edge-agent/venv/bin/python"
    assert run(python, "-I", "-m", "edge_agent", "--version") == \
        f"edge-agent {__version__} (commit {git_commit(REPO)})\n"


def installed_status() -> str:
    done = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", "edge-agent"],
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else "not-installed"


@pytest.fixture
def this_machine() -> Iterator[None]:
    """The machine as it was: no edge-agent package, files or (if there was none) user."""
    if installed_status() != "not-installed":  # left by an interrupted run of this test
        run("dpkg", "--purge", "edge-agent")
    foreign = [str(place) for place in PLACES if place.exists()]
    assert foreign == [], (f"{foreign} exist and do not belong to the package: this test "
                           "installs edge-agent on this machine (scripts/uninstall --purge)")
    had_user = subprocess.run(["getent", "passwd", "edge-agent"],
                              capture_output=True, timeout=60).returncode == 0
    try:
        yield
    finally:
        if installed_status() != "not-installed":
            subprocess.run(["dpkg", "--purge", "edge-agent"], capture_output=True,
                           timeout=300)
        if not had_user:
            subprocess.run(["userdel", "edge-agent"], capture_output=True, timeout=60)
            subprocess.run(["groupdel", "edge-agent"], capture_output=True, timeout=60)
        for place in PLACES:
            shutil.rmtree(place, ignore_errors=True)


def test_dpkg_installs_upgrades_keeping_the_edit_removes_and_purges(
        package, newer_package, tmp_path, request):
    if not AS_ROOT:
        # dpkg needs root: compare the builds as dpkg would see them instead.
        old, new = tmp_path / "old", tmp_path / "new"
        run("dpkg-deb", "--raw-extract", package, old)
        run("dpkg-deb", "--raw-extract", newer_package, new)
        assert (new / "etc/edge-agent/station.yaml").read_text() == \
            (old / "etc/edge-agent/station.yaml").read_text() + CHANGED_EXAMPLE
        assert "etc/edge-agent/station.yaml" in (new / "DEBIAN/conffiles").read_text()
        assert run(new / "opt/edge-agent/venv/bin/python", "-I", "-m", "edge_agent",
                   "--version").startswith("edge-agent 99.0.0 (commit ")
        return
    request.getfixturevalue("this_machine")

    run("dpkg", "--install", package)
    assert installed_status() == "installed"
    assert run("/usr/bin/edge-agent", "--version") == \
        f"edge-agent {__version__} (commit {git_commit(REPO)})\n"
    passwd = run("getent", "passwd", "edge-agent").strip().split(":")
    assert passwd[5:] == ["/var/lib/edge-agent", "/usr/sbin/nologin"], passwd
    assert "edge-agent" in run("getent", "group", "dialout").strip().split(":")[3].split(",")
    assert STATION.read_bytes() == (REPO / "config/station.example.yaml").read_bytes()
    assert oct(STATION.stat().st_mode & 0o777) == "0o640"
    assert STATION.stat().st_gid == int(passwd[3]), "readable by the service's group"
    assert Path("/etc/edge-agent/edge-agent.env").stat().st_mode & 0o777 == 0o600
    assert list(Path("/opt/edge-agent/venv/lib").rglob("__pycache__")), "postinst compiled"
    run("sha256sum", "--check", "--quiet", "/usr/share/doc/edge-agent/SHA256SUMS",
        cwd=Path("/"))
    check = subprocess.run(["/usr/bin/edge-agent", "check", str(STATION)],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "EDGE_AGENT_MQTT_PASSWORD": "secret"})
    assert check.returncode == 0 and check.stdout.startswith("OK:"), check.stderr

    edited = STATION.read_text() + "# tuned on site by the technician\n"
    STATION.write_text(edited)
    OUTBOX.parent.mkdir(parents=True)
    OUTBOX.write_bytes(b"samples not yet delivered")

    run("dpkg", "--install", "--force-confold", newer_package)
    assert run("/usr/bin/edge-agent", "--version").startswith("edge-agent 99.0.0 (commit ")
    assert STATION.read_text() == edited, "the technician's edit survives the upgrade"
    assert Path(f"{STATION}.dpkg-dist").read_text().endswith(CHANGED_EXAMPLE)
    assert Path("/opt/edge-agent/config/station.example.yaml").read_text() \
        .endswith(CHANGED_EXAMPLE)
    assert oct(STATION.stat().st_mode & 0o777) == "0o640"
    assert OUTBOX.read_bytes() == b"samples not yet delivered"

    run("dpkg", "--remove", "edge-agent")
    assert installed_status() == "config-files"
    assert not Path("/opt/edge-agent/venv").exists()
    assert not Path("/usr/bin/edge-agent").is_symlink()
    assert not Path("/usr/lib/systemd/system/edge-agent.service").exists()
    assert STATION.read_text() == edited
    assert OUTBOX.read_bytes() == b"samples not yet delivered"

    run("dpkg", "--purge", "edge-agent")
    assert installed_status() == "not-installed"
    assert not OUTBOX.parent.exists()
    assert not STATION.parent.exists()
    overrides = subprocess.run(["dpkg-statoverride", "--list"], capture_output=True,
                               text=True, timeout=60).stdout
    assert "/etc/edge-agent" not in overrides
