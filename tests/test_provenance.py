"""``edge-agent --version`` names the commit: from the build info a build writes, from git
in a checkout, ``unknown`` when neither says (edge_agent/provenance.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent import __version__
from edge_agent.provenance import git_commit, write_build_info

# Every test here starts real processes (git, builds, installers, the agent).
pytestmark = pytest.mark.real_parts

REPO = Path(__file__).parent.parent


def version_of(source: Path) -> str:
    """``version_line()`` of the edge_agent package copied into ``source``."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from edge_agent.provenance import version_line; print(version_line())")
    done = subprocess.run([sys.executable, "-I", "-c", code, str(source)],
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def copy_package(source: Path) -> Path:
    (source / "edge_agent").mkdir(parents=True)
    for name in ("__init__.py", "provenance.py"):
        shutil.copy(REPO / "edge_agent" / name, source / "edge_agent" / name)
    return source


def test_in_a_checkout_the_version_names_the_commit_git_describes():
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, timeout=60, check=True).stdout.strip()
    commit = git_commit(REPO)
    assert commit in (head[:12], f"{head[:12]}-dirty")
    done = subprocess.run([sys.executable, "-m", "edge_agent", "--version"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert (done.returncode, done.stdout) == \
        (0, f"edge-agent {__version__} (commit {commit})\n"), done.stderr


def test_a_build_names_the_commit_written_at_build_time(tmp_path):
    source = copy_package(tmp_path / "src")
    assert version_of(source) == f"edge-agent {__version__} (commit unknown)"
    write_build_info(source, "0123456789ab-dirty")
    assert version_of(source) == f"edge-agent {__version__} (commit 0123456789ab-dirty)"


def test_outside_a_git_checkout_the_commit_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"


def test_the_build_writer_names_the_checkouts_commit(tmp_path):
    source = copy_package(tmp_path / "src")
    done = subprocess.run([sys.executable, "-I", str(source / "edge_agent/provenance.py"),
                           "--write", str(source), "--checkout", str(REPO)],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == git_commit(REPO)
    assert version_of(source) == f"edge-agent {__version__} (commit {git_commit(REPO)})"
