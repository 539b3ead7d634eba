"""The serial-text kind's ``unit_id``: the instrument's own address.

Declared apart from config_text.py so that the registry entry (reader.py), imported for
every station, can name it without loading the whole ``text:`` reader (config_text.py,
config_record.py, protocol/parse.py): a station without serial-text devices never needs
them (docs/performance.md, Memory).
"""

from __future__ import annotations

from edge_agent.config.declare import Setting
from edge_agent.i18n import N_

#: A text instrument's own address (unit_id): optional, used only as {address}.
ADDRESS = Setting(("unit_id",), "integer", 0, 65535, hint=N_(
    "an integer 0..65535 (for serial-text: the instrument's address, used as {address} "
    "in the request; leave it out when there is none)"))
