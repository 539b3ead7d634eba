"""Cutting a TCP byte stream into HJ 212 packets.

A packet ends with CRLF; it is cut there rather than by its length field, because an
SM4-encrypted packet's length field counts the plaintext (HJ 212-2025 A.2) and a wrong
length must be reported by the checker, not lose the stream's place. Bytes before ``##``
and lines longer than ``max_packet`` are discarded and counted, so garbage cannot grow
memory or hide the next packet.
"""

from __future__ import annotations

MAX_PACKET = 8192  # an encrypted 1024-character segment is about 5 times longer as {0x..}


class PacketStream:
    """Feed bytes in, take whole packets (CRLF included) out."""

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        self.max_packet = max_packet
        self.discarded_bytes = 0
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The packets completed by ``data``."""
        self._buffer += data
        packets = []
        while True:
            start = self._buffer.find(b"##")
            if start < 0:
                keep = 1 if self._buffer.endswith(b"#") else 0
                self.discarded_bytes += len(self._buffer) - keep
                del self._buffer[: len(self._buffer) - keep]
                return packets
            while self._buffer[start + 2:start + 3] == b"#":  # "###0123": the last ## starts
                start += 1
            if start:
                self.discarded_bytes += start
                del self._buffer[:start]
            end = self._buffer.find(b"\r\n")
            if end < 0:
                if len(self._buffer) > self.max_packet:
                    self.discarded_bytes += len(self._buffer)
                    self._buffer.clear()
                return packets
            packets.append(bytes(self._buffer[: end + 2]))
            del self._buffer[: end + 2]
