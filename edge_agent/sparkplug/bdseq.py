"""The birth/death sequence number, kept across restarts in a small file.

Sparkplug numbers an edge node's MQTT connections: bdSeq starts at 0 and goes up by one
on every new CONNECT (tck-id-topics-nbirth-bdseq-increment), wrapping after 255. A host
pairs an NDEATH with the NBIRTH of the same bdSeq and ignores a death of an older
connection, so a restarted agent must not reuse the number of the connection before.

``next_for_connect`` takes the next number and writes it (temporary file, fsync, rename)
before the caller connects: a crash after that wastes a number, never repeats one. A file
that is unreadable or holds garbage is logged and counted, and numbering restarts at 0 (a
host then sees one stale-looking death at worst); it never stops the uplink. The uplink
keeps the file as ``sparkplug-NAME.bdseq`` beside the outbox, and gives a number back
(``give_back``) when the broker's port refused the connection before any CONNECT
carried it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

MODULUS = 256


class BdSeqFile:
    """The last bdSeq used, in ``path`` (one decimal number and a newline)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.unreadable = 0  # times the file held something that is not a bdSeq

    def last(self) -> int | None:
        """The bdSeq of the previous connection; None when there was none (or the file
        is garbled: logged, counted in ``unreadable``)."""
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            return self._garbled(f"cannot be read ({err})")
        word = text.strip()
        if not word.isdigit() or int(word) >= MODULUS:
            return self._garbled(f"holds {word[:20]!r}, expected a number 0..255")
        return int(word)

    def _garbled(self, what: str) -> None:
        self.unreadable += 1
        log.error("Sparkplug bdSeq file %s %s; numbering connections from 0 again",
                  self.path, what)
        return None

    def give_back(self, number: int) -> None:
        """The connection numbered ``number`` never sent its CONNECT (the broker's port
        refused the TCP connection): the next one reuses it, so a host sees bdSeq go up
        by one per CONNECT, not per attempt while a broker is down for hours."""
        if self.last() == number:
            self._write((number - 1) % MODULUS)

    def next_for_connect(self) -> int:
        """The bdSeq of the connection about to be made, written before it is used."""
        last = self.last()
        number = 0 if last is None else (last + 1) % MODULUS
        self._write(number)
        return number

    def _write(self, number: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w", encoding="ascii") as out:
            out.write(f"{number}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
