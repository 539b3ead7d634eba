"""What a platform changed on the station, kept across restarts: one small JSON file per
HJ 212 uplink in the state directory (``hj212-NAME.json``).

HJ 212 lets a platform set the answer timeout and retries (CN 1000), the real-time and
minute intervals (1062, 1064) and the access password (1072); the station must keep
them (issue 13 item 4). Why not the outbox: these are five values changed a few times a
year, read once when the uplink starts; the outbox's tables are the hot path of samples
(append, claim, acknowledge) and belong to the forwarder. A file the engineer can read
(``cat``) also answers "why does the station not use the timeout in its station file?".

Written atomically: a temporary file in the same directory, flushed and fsynced, then
``os.replace`` and an fsync of the directory, so a power cut leaves the old or the new
values, never half a file. Mode 0600: it may hold the password. A file that cannot be
read (damaged, not JSON) is logged and ignored: the station file's values apply.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredSettings:
    """The values a platform set; None: not set by the platform (the station file's)."""

    timeout_s: int | None = None
    retries: int | None = None
    rtd_interval_s: int | None = None
    min_interval_min: int | None = None
    password: str | None = None


class PlatformStateFile:
    """Reads the file once, writes it on every change; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._values = self._load()

    def get(self) -> StoredSettings:
        with self._lock:
            return self._values

    def update(self, **changes: int | str) -> StoredSettings:
        """Apply ``changes`` and write the file before returning (OSError on failure:
        the platform is then told the setting failed)."""
        with self._lock:
            values = replace(self._values, **changes)
            self._write(values)
            self._values = values
            return values

    def _load(self) -> StoredSettings:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return StoredSettings()
        except (OSError, ValueError) as err:
            log.error("%s: cannot be read (%s); the station file's values apply", self.path,
                      err)
            return StoredSettings()
        known = {item.name: item.type for item in fields(StoredSettings)}
        if not isinstance(data, dict):
            log.error("%s: expected a JSON object; the station file's values apply", self.path)
            return StoredSettings()
        kept = {name: value for name, value in data.items()
                if name in known and (value is None or isinstance(value, int | str))}
        return StoredSettings(**kept)

    def _write(self, values: StoredSettings) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(asdict(values), handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
