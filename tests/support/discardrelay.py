"""A TCP relay that can black-hole a link by discarding: while ``discarding`` it reads
what either end sends and throws it away, keeping every connection open (no FIN, no RST)
and accepting new ones. Unlike ``BlackHoleProxy.freeze`` (which stops reading, so the
bytes wait in socket buffers and arrive late on ``thaw``), nothing sent during the outage
ever arrives: a radio link that loses packets, not one that stalls.
"""

from __future__ import annotations

import socket

from support.blackhole import BlackHoleProxy


class DiscardingRelay(BlackHoleProxy):
    """Relays 127.0.0.1:``port`` to 127.0.0.1:``target_port``; ``discard()`` starts the
    outage, ``restore()`` ends it. ``discarded_bytes`` counts what was thrown away."""

    discarded_bytes = 0

    def discard(self) -> None:
        self._frozen.set()

    def restore(self) -> None:
        self._frozen.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.1):
                sock = key.fileobj
                if sock is self._listener:
                    self._accept()
                elif self._frozen.is_set():
                    self._drop(sock)
                else:
                    self._relay(sock)

    def _drop(self, sock: socket.socket) -> None:
        if sock not in self._pairs:
            return
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if data:
            self.discarded_bytes += len(data)
        else:
            self._close_pair(sock)
