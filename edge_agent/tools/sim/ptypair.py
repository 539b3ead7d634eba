"""A virtual null-modem cable: two pseudo-terminals whose bytes are relayed to each other.

Like ``socat pty,raw pty,raw``: one end is opened by a simulated RS-485 device, the other
by the agent, both as ordinary serial port paths (``/dev/pts/N``). Bytes are relayed
unchanged and immediately; there is no baud-rate timing.
"""

from __future__ import annotations

import os
import select
import termios
import threading
import tty


class PtyPair:
    """Two linked serial port paths: ``device_path`` and ``agent_path``."""

    def __init__(self) -> None:
        self._master_a, slave_a = os.openpty()
        self._master_b, slave_b = os.openpty()
        for fd in (self._master_a, self._master_b, slave_a, slave_b):
            tty.setraw(fd, termios.TCSANOW)
        self.device_path = os.ttyname(slave_a)
        self.agent_path = os.ttyname(slave_b)
        # Keep the slave ends open so the masters never see EOF/EIO while a side reopens.
        self._slaves = (slave_a, slave_b)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._relay, daemon=True, name="pty-relay")
        self._thread.start()

    def _relay(self) -> None:
        peers = {self._master_a: self._master_b, self._master_b: self._master_a}
        while True:
            readable, _, _ = select.select([*peers, self._stop_r], [], [])
            if self._stop_r in readable:
                return
            for fd in readable:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if data:
                    os.write(peers[fd], data)

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._master_a, self._master_b, *self._slaves, self._stop_r, self._stop_w):
            os.close(fd)

    def __enter__(self) -> PtyPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
