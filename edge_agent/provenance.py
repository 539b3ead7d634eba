"""Which source an installed agent was built from, for ``edge-agent --version``.

A station runs a wheel, not a checkout: the version number alone cannot tell two builds
of the same version apart (a fix installed from a branch, a local edit). So every build
(``scripts/install``, ``scripts/bundle``, ``packaging/build-deb``) writes the commit into
``edge_agent/_build_info.py`` of the copy it builds from, before building the wheel; the
file is gitignored and never exists in a checkout. Run from a checkout (an editable
install), the commit comes from ``git describe`` instead, at each call.

The build info holds no time stamp: the same checkout must give the same wheel, byte for
byte (the installer compares wheels to decide whether anything changed).

Only the standard library is used: the build scripts run this file directly
(``python3 -I edge_agent/provenance.py --write DIR``) before anything is installed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BUILD_INFO = "_build_info.py"
UNKNOWN = "unknown"


def git_commit(checkout: Path) -> str:
    """``<12-hex commit>`` or ``<commit>-dirty`` (uncommitted changes) for a git checkout,
    ``unknown`` elsewhere (a release tarball, no git installed)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(checkout), "describe", "--always", "--dirty", "--abbrev=12",
             "--exclude=*"],
            capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return UNKNOWN
    described = done.stdout.strip()
    return described if done.returncode == 0 and described else UNKNOWN


def built_from() -> str:
    """The commit of this build: the build info when installed, else ``git describe`` of
    the checkout this package is in, else ``unknown``."""
    try:
        from edge_agent import _build_info  # type: ignore[attr-defined]
    except ImportError:
        package = Path(__file__).resolve().parent
        if (package.parent / "pyproject.toml").is_file():
            return git_commit(package.parent)
        return UNKNOWN
    return str(_build_info.COMMIT)


def version_line() -> str:
    """What ``edge-agent --version`` prints: ``edge-agent 0.1.0 (commit 93e34aa5b1c2)``."""
    from edge_agent import __version__

    return f"edge-agent {__version__} (commit {built_from()})"


def write_build_info(source: Path, commit: str) -> Path:
    """Write ``source/edge_agent/_build_info.py`` naming ``commit``; returns its path."""
    target = source / "edge_agent" / BUILD_INFO
    target.write_text(
        '"""Written by the build (edge_agent/provenance.py), not kept in git."""\n\n'
        f"COMMIT = {commit!r}\n", encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the build info of a copy of the source before building a wheel.")
    parser.add_argument("--write", type=Path, required=True, metavar="COPY",
                        help="the copy of the source tree to build from")
    parser.add_argument("--checkout", type=Path, required=True,
                        help="the checkout the copy was made from (its git commit is used)")
    args = parser.parse_args(argv)
    commit = git_commit(args.checkout)
    write_build_info(args.write, commit)
    print(commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
