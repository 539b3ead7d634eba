"""``store.path`` checked as a place for the outbox, not only as text: what is there
already, and whether the agent's user can create its files beside it.

The rules live in edge_agent/store/pathcheck.py, which the outbox applies again when it
opens: ``check`` and ``run`` refuse the same paths, so a path ``check`` accepted does not
make ``run`` exit in a restart loop, and a file that is not an outbox (a station file,
``/etc/hosts``, another program's database) is never renamed or written. An outbox of a
newer release is refused here as well (the outbox refuses it at open, with exit 1).
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.config.fields import Checker, Section
from edge_agent.config.yamlsource import MapNode
from edge_agent.store.pathcheck import newer_release, refusal

FIELD = "store.path"


def check_store_place(ck: Checker, top: Section, path: Path,
                      systemd_state_dir: Path | None) -> None:
    """Report why the outbox cannot live at ``path`` (the resolved ``store.path``, or
    the default), at the line of ``store.path``. ``systemd_state_dir``: systemd's
    ``STATE_DIRECTORY``, which systemd creates at start even if it is missing now.
    Nothing is reported again when ``store.path`` itself was already found wrong."""
    if any(issue.path == FIELD for issue in ck.issues):
        return
    problem = refusal(path, systemd_state_dir) or newer_release(path)
    if problem is not None:
        ck.report(_line(top), FIELD, problem)


def _line(top: Section) -> int | None:
    """The line of the ``path:`` value, else of ``store:``, else none (the default)."""
    store = top.node.get("store")
    if store is None:
        return None
    if isinstance(store.value, MapNode) and (entry := store.value.get("path")) is not None:
        return entry.value.line
    return store.line
