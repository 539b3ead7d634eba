"""Log lines that name their uplink (issue 12 loose end).

With several uplinks, "connected to broker ..." or "broker connection lost" must say
which uplink it is about, or a technician cannot tell them apart: every uplink-specific
line of forward/ starts with ``uplink <name>: ``. The uplink of a station that has only
an ``mqtt:`` section (``default``) keeps its lines unprefixed, as in earlier releases,
so single-uplink logs and the docs quoting them stay as they were.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from edge_agent.store.schema import DEFAULT_UPLINK


class UplinkLog(logging.LoggerAdapter):
    """``logger`` with ``uplink <name>: `` in front of every message (none for the
    default uplink). The prefix goes in front of the format string, so %-arguments and
    ``exc_info`` work as with the logger itself."""

    def __init__(self, logger: logging.Logger, uplink: str) -> None:
        super().__init__(logger, {"uplink": uplink})
        self.prefix = "" if uplink == DEFAULT_UPLINK else f"uplink {uplink}: "

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]
                ) -> tuple[Any, MutableMapping[str, Any]]:
        return (f"{self.prefix}{msg}" if self.prefix else msg), kwargs


def uplink_log(logger: logging.Logger, uplink: str) -> logging.Logger | UplinkLog:
    """The logger to use for ``uplink``'s lines: ``logger`` itself for the default."""
    return logger if uplink == DEFAULT_UPLINK else UplinkLog(logger, uplink)
