"""A raw Modbus RTU 'device' on a pty path that answers the way broken field devices do:
late, short, truncated, with a bad CRC, with garbage in front, for another unit...

It is written from the Modbus spec with no pymodbus code, so a pymodbus bug cannot hide
on both sides. Holding register a holds 100 + a, input register a holds 7000 + a.

A ``late`` answer is held, not timed: it goes out when the test calls ``release_late``
(from inside the client's drain, tests/support/drainclock.py), or else right before the
answer to the next request, which is when a client that does not drain would read it.
So no race between a delay and the client's timeout decides what a test proves.
"""

from __future__ import annotations

import os
import select
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterator

Writes = list[tuple[float, bytes]]  # (pause before, bytes) pairs


def crc16_modbus(frame: bytes) -> bytes:
    """CRC-16/MODBUS, low byte first, written out here independently of pymodbus and of
    the agent's checksums.py, so tests that build frames with it check those, not
    themselves."""
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


def with_crc(body: bytes) -> bytes:
    return body + crc16_modbus(body)


def read_answer(unit: int, function: int, address: int, count: int) -> bytes:
    base = 100 if function == 3 else 7000
    words = b"".join(struct.pack(">H", (base + address + i) & 0xFFFF) for i in range(count))
    return with_crc(bytes([unit, function, 2 * count]) + words)


def _good(u: int, f: int, a: int, n: int) -> Writes:
    return [(0.0, read_answer(u, f, a, n))]


def _corrupt_crc(u: int, f: int, a: int, n: int) -> Writes:
    frame = read_answer(u, f, a, n)
    return [(0.0, frame[:-1] + bytes([frame[-1] ^ 0x5A]))]


BEHAVIOURS: dict[str, Callable[[int, int, int, int], Writes]] = {
    "good": _good,
    "silent": lambda u, f, a, n: [],
    "late": lambda u, f, a, n: [],  # held: see RawRtuSlave.release_late
    "short": lambda u, f, a, n: [(0.0, read_answer(u, f, a, n - 1 if n > 1 else 0))],
    "truncated": lambda u, f, a, n: [(0.0, read_answer(u, f, a, n)[:5])],
    "bad_crc": _corrupt_crc,
    "garbage_first": lambda u, f, a, n: [(0.0, b"\x00\xff\x13" + read_answer(u, f, a, n))],
    "noise": lambda u, f, a, n: [(0.0, b"\x55\xaa\x00\x13\x37\xfe")],
    "other_unit": lambda u, f, a, n: [(0.0, read_answer(9, f, a, n))],
    "other_function": lambda u, f, a, n: [(0.0, read_answer(u, 7 - f, a, n))],
    "busy": lambda u, f, a, n: [(0.0, with_crc(bytes([u, f | 0x80, 0x06])))],
    "split": lambda u, f, a, n: [(0.0, read_answer(u, f, a, n)[:4]),
                                 (0.03, read_answer(u, f, a, n)[4:])],
    "bytewise": lambda u, f, a, n: [(0.005, bytes([b])) for b in read_answer(u, f, a, n)],
}


class RawRtuSlave:
    """Answers each read request (function 3 or 4, unit ``unit``) with the next behaviour
    from ``script`` (names from BEHAVIOURS); ``answered`` counts them."""

    def __init__(self, path: str, script: Iterator[str], unit: int = 1) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        self._script = script
        self._unit = unit
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.answered: Counter[str] = Counter()
        self._held = b""  # a late answer not sent yet
        self._thread = threading.Thread(target=self._serve, daemon=True, name="raw-rtu")

    def __enter__(self) -> RawRtuSlave:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self._fd)

    def release_late(self) -> int:
        """Send the held late answer now (the device finally answers); returns its length,
        0 when none is held."""
        with self._lock:
            held, self._held = self._held, b""
            if held:
                os.write(self._fd, held)
        return len(held)

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            if not select.select([self._fd], [], [], 0.05)[0]:
                continue
            buffer += os.read(self._fd, 256)
            while len(buffer) >= 8:
                request, buffer = buffer[:8], buffer[8:]
                if request[0] != self._unit or request[1] not in (3, 4) or \
                        request[6:] != crc16_modbus(request[:6]):
                    buffer = b""  # lost sync: drop everything, like a real device
                    break
                address, count = struct.unpack(">HH", request[2:6])
                name = next(self._script)
                self.release_late()  # still held: it lands before this request's answer
                if name == "late":
                    with self._lock:
                        self._held = read_answer(request[0], request[1], address, count)
                for pause_s, data in BEHAVIOURS[name](request[0], request[1], address, count):
                    if self._stop.wait(pause_s):
                        return
                    os.write(self._fd, data)
                with self._lock:
                    self.answered[name] += 1
