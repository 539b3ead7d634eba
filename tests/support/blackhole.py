"""A TCP relay that can silently stop relaying: packets dropped, no FIN, no RST.

This is what a 4G link that loses its radio bearer looks like to both ends: the
connection stays open and nothing arrives. Only MQTT keepalive can detect it.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class BlackHoleProxy:
    """Relays 127.0.0.1:``port`` to 127.0.0.1:``target_port`` until frozen."""

    def __init__(self, target_port: int, listen_port: int = 0,
                 rate_bytes_per_s: float | None = None) -> None:
        """``rate_bytes_per_s`` throttles the relay like a slow uplink: the client's
        socket buffer fills and its writes become partial."""
        self._target_port = target_port
        self._rate = rate_bytes_per_s
        self._listener = socket.socket()
        if rate_bytes_per_s is not None:  # small buffers: back-pressure reaches the client
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._listener.bind(("127.0.0.1", listen_port))
        self._listener.listen()
        self.port = self._listener.getsockname()[1]
        self._frozen = threading.Event()
        self._frozen_seen = threading.Event()  # the relay loop has seen the freeze
        self.relayed_bytes = 0  # passed through, both directions
        self._stop = threading.Event()
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._upstreams: set[socket.socket] = set()  # our sockets to the target
        self._replies_only = False  # frozen one way: what the target sends is dropped
        self.connections = 0  # accepted so far: a client that reconnected shows here
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, daemon=True, name="blackhole")

    def start(self) -> BlackHoleProxy:
        self._thread.start()
        return self

    def freeze(self, replies_only: bool = False) -> None:
        """Stop relaying in both directions (``replies_only``: only what the target
        sends back, so the client's packets still arrive and nothing answers them); keep
        every socket open. Returns once the relay loop has seen it: no byte passes after
        this returns (a relay that was under way when it was called has finished)."""
        self._replies_only = replies_only
        self._frozen_seen.clear()
        self._frozen.set()
        if self._thread.is_alive() and not self._frozen_seen.wait(5):
            raise RuntimeError("the relay loop did not stop relaying within 5 s")

    def thaw(self) -> None:
        self._frozen.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.1):
                sock = key.fileobj
                if sock is self._listener:
                    self._accept()
                elif not self._frozen.is_set() or (self._replies_only
                                                   and sock not in self._upstreams):
                    self._relay(sock)
            if self._frozen.is_set():
                self._frozen_seen.set()
                self._stop.wait(0.05)  # do not spin on readable sockets we ignore

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        self.connections += 1
        try:
            upstream = socket.create_connection(("127.0.0.1", self._target_port), timeout=2)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            self._sel.register(sock, selectors.EVENT_READ)
        self._pairs[client], self._pairs[upstream] = upstream, client
        self._upstreams.add(upstream)

    def _relay(self, sock: socket.socket) -> None:
        peer = self._pairs.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(4096 if self._rate else 65536)
            if data:
                peer.setblocking(True)
                peer.sendall(data)
                peer.setblocking(False)
                self.relayed_bytes += len(data)
                if self._rate:
                    self._stop.wait(len(data) / self._rate)
                return
        except OSError:
            pass
        self._close_pair(sock)

    def _close_pair(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        for one in (sock, peer):
            if one is None:
                continue
            self._pairs.pop(one, None)
            self._upstreams.discard(one)
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(one)
            one.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in list(self._pairs):
            self._close_pair(sock)
        self._listener.close()
