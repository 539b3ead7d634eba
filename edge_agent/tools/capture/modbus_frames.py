"""Modbus framing as pure functions: MBAP (TCP), RTU with CRC-16, ASCII with LRC.

Written from the Modbus specifications without pymodbus, on purpose: a capture tool must
keep a malformed frame exactly as it came (pymodbus' framers drop or repair it), and the
recorder must not share a framing bug with the client whose traffic it records.

``decode_tcp``, ``decode_rtu`` and ``decode_ascii`` take one delimited frame and say what
it holds (``FrameInfo``); they never raise on bad input: whatever does not fit the
specification is named in ``FrameInfo.malformed``, and every field that could still be read
is filled in, so a person reading the capture sees as much as the bytes allow.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

MAX_PDU = 253  # function code + data, all framings
MBAP_HEADER = 6  # transaction id, protocol id, length; the unit id is counted in length
MIN_MBAP_LENGTH, MAX_MBAP_LENGTH = 2, 1 + MAX_PDU  # unit id + at least a function code
READS = (1, 2, 3, 4)
SINGLE_WRITES = (5, 6)
MULTIPLE_WRITES = (15, 16)


@dataclass(frozen=True)
class FrameInfo:
    """What one frame holds. ``function_code`` is as sent (0x80 set in an exception
    answer); ``address``/``count`` are those of a request (or a write echo); ``tid`` is the
    MBAP transaction id (TCP only). ``malformed`` says why the frame breaks the rules."""

    unit_id: int | None = None
    function_code: int | None = None
    tid: int | None = None
    address: int | None = None
    count: int | None = None
    exception_code: int | None = None
    malformed: str | None = None


# -- checksums ---------------------------------------------------------------------------


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def lrc(data: bytes) -> int:
    """Modbus ASCII longitudinal redundancy check: two's complement of the byte sum."""
    return (-sum(data)) & 0xFF


# -- PDU ---------------------------------------------------------------------------------


def decode_pdu(pdu: bytes, is_request: bool) -> FrameInfo:
    """Function code, address, count or exception of one PDU (function code + data).

    Function codes without address and count (diagnostics, device identification, ...)
    are read as far as their function code; their data is not checked.
    """
    if not pdu:
        return FrameInfo(malformed="no function code")
    fc = pdu[0]
    if fc & 0x80:
        if len(pdu) != 2:
            return FrameInfo(function_code=fc, exception_code=pdu[1] if len(pdu) > 1 else None,
                             malformed=f"exception answer of {len(pdu)} bytes (expected "
                             "function code and exception code)")
        return FrameInfo(function_code=fc, exception_code=pdu[1])
    decoder = _decode_request if is_request else _decode_answer
    return decoder(fc, pdu)


def _decode_request(fc: int, pdu: bytes) -> FrameInfo:
    if fc in READS + SINGLE_WRITES:
        return _address_and_word(fc, pdu, "request")
    if fc in MULTIPLE_WRITES:
        if len(pdu) < 6:
            return FrameInfo(function_code=fc, malformed=f"function {fc} request of "
                             f"{len(pdu)} bytes is too short")
        address, count = struct.unpack(">HH", pdu[1:5])
        if len(pdu) != 6 + pdu[5]:
            return FrameInfo(function_code=fc, address=address, count=count,
                             malformed=f"byte count {pdu[5]} but {len(pdu) - 6} data bytes")
        return FrameInfo(function_code=fc, address=address, count=count)
    return FrameInfo(function_code=fc)


def _decode_answer(fc: int, pdu: bytes) -> FrameInfo:
    if fc in READS:
        if len(pdu) < 2 or len(pdu) != 2 + pdu[1]:
            found = f"byte count {pdu[1]} but {len(pdu) - 2} data bytes" if len(pdu) >= 2 \
                else "no byte count"
            return FrameInfo(function_code=fc, malformed=found)
        return FrameInfo(function_code=fc)
    if fc in SINGLE_WRITES + MULTIPLE_WRITES:
        return _address_and_word(fc, pdu, "answer")
    return FrameInfo(function_code=fc)


def _address_and_word(fc: int, pdu: bytes, what: str) -> FrameInfo:
    """A PDU of function code, address and one word: the word is the count of a read
    request or a multiple-write answer; a single write writes one register or coil."""
    if len(pdu) != 5:
        return FrameInfo(function_code=fc, malformed=f"function {fc} {what} of "
                         f"{len(pdu)} bytes (expected 5)")
    address, word = struct.unpack(">HH", pdu[1:5])
    return FrameInfo(function_code=fc, address=address,
                     count=1 if fc in SINGLE_WRITES else word)


# -- Modbus TCP (MBAP) -------------------------------------------------------------------


def mbap_header_problem(header: bytes) -> str | None:
    """Why the first 6 bytes cannot start an MBAP frame, or None when they can."""
    _tid, protocol, length = struct.unpack(">HHH", header[:MBAP_HEADER])
    if protocol != 0:
        return f"invalid MBAP header: protocol id {protocol} (Modbus is 0)"
    if not MIN_MBAP_LENGTH <= length <= MAX_MBAP_LENGTH:
        return (f"invalid MBAP header: length {length} (Modbus allows "
                f"{MIN_MBAP_LENGTH}..{MAX_MBAP_LENGTH})")
    return None


def decode_tcp(frame: bytes, is_request: bool) -> FrameInfo:
    """Decode one Modbus TCP frame (MBAP header + PDU), as delimited by the caller."""
    if len(frame) < MBAP_HEADER + 2:
        return FrameInfo(malformed=f"{len(frame)} bytes: too short for a Modbus TCP frame")
    tid, _protocol, length = struct.unpack(">HHH", frame[:MBAP_HEADER])
    known = FrameInfo(unit_id=frame[6], function_code=frame[7], tid=tid)
    problem = mbap_header_problem(frame)
    if problem is None and len(frame) != MBAP_HEADER + length:
        problem = f"MBAP length {length} but {len(frame) - MBAP_HEADER} bytes follow it"
    if problem is not None:
        return replace(known, malformed=problem)
    pdu = decode_pdu(frame[7:], is_request)
    return replace(pdu, unit_id=frame[6], tid=tid)


def encode_tcp(tid: int, unit_id: int, pdu: bytes) -> bytes:
    """An MBAP frame around ``pdu``."""
    return struct.pack(">HHHB", tid & 0xFFFF, 0, len(pdu) + 1, unit_id) + pdu


def tcp_adu(frame: bytes) -> bytes | None:
    """Unit id + PDU of a well-framed Modbus TCP frame, None if the header is broken."""
    if len(frame) < MBAP_HEADER + 2 or mbap_header_problem(frame) is not None:
        return None
    if len(frame) != MBAP_HEADER + struct.unpack(">H", frame[4:6])[0]:
        return None
    return frame[6:]


# -- Modbus RTU --------------------------------------------------------------------------


def decode_rtu(frame: bytes, is_request: bool) -> FrameInfo:
    """Decode one RTU frame (unit id, PDU, CRC low byte first)."""
    if len(frame) < 4:
        return FrameInfo(unit_id=frame[0] if frame else None,
                         malformed=f"{len(frame)} bytes: too short for an RTU frame")
    sent = int.from_bytes(frame[-2:], "little")
    computed = crc16(frame[:-2])
    known = FrameInfo(unit_id=frame[0], function_code=frame[1])
    if sent != computed:
        return replace(known, malformed=f"bad CRC {sent:04x} (computed {computed:04x})")
    return replace(decode_pdu(frame[1:-2], is_request), unit_id=frame[0])


def encode_rtu(unit_id: int, pdu: bytes) -> bytes:
    """An RTU frame: unit id, ``pdu``, CRC-16 low byte first."""
    body = bytes([unit_id]) + pdu
    return body + crc16(body).to_bytes(2, "little")


def rtu_adu(frame: bytes) -> bytes | None:
    """Unit id + PDU of an RTU frame with a good CRC, None otherwise."""
    if len(frame) < 4 or crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
        return None
    return frame[:-2]


def rtu_frame_length(buffer: bytes, is_request: bool) -> int | None:
    """Length of the RTU frame at the start of ``buffer``, None until enough bytes arrived.

    The function code fixes the length of the common frames; for others (diagnostics,
    device identification, vendor functions) the shortest prefix whose CRC checks is the
    frame. RTU has no length field: on a real line, silence ends a frame, which a pty does
    not reproduce, so lengths are what a pty-served replay relies on.
    """
    if len(buffer) < 2:
        return None
    fixed = _rtu_fixed_length(buffer, is_request)
    if fixed is not None:
        return fixed if 0 < fixed <= len(buffer) else None
    for end in range(4, min(len(buffer), 2 + MAX_PDU + 2) + 1):
        if crc16(buffer[:end - 2]) == int.from_bytes(buffer[end - 2:end], "little"):
            return end
    return None


def _rtu_fixed_length(buffer: bytes, is_request: bool) -> int | None:
    """Frame length implied by the function code: 0 while the byte count that fixes it
    has not arrived, None when the function code implies no length."""
    fc = buffer[1]
    if fc & 0x80:
        return 5
    if is_request and fc in READS + SINGLE_WRITES:
        return 8
    if is_request and fc in MULTIPLE_WRITES:  # byte count at offset 6
        return 9 + buffer[6] if len(buffer) > 6 else 0
    if not is_request and fc in SINGLE_WRITES + MULTIPLE_WRITES:
        return 8
    if not is_request and fc in READS:  # byte count at offset 2
        return 5 + buffer[2] if len(buffer) > 2 else 0
    return None


# -- Modbus ASCII ------------------------------------------------------------------------


def decode_ascii(frame: bytes, is_request: bool) -> FrameInfo:
    """Decode one ASCII frame (``:`` hex digits, LRC, CR LF)."""
    adu, problem = _ascii_body(frame)
    if adu is None:
        return FrameInfo(malformed=problem)
    known = FrameInfo(unit_id=adu[0] if adu else None,
                      function_code=adu[1] if len(adu) > 1 else None)
    if problem is not None:
        return replace(known, malformed=problem)
    return replace(decode_pdu(adu[1:-1], is_request), unit_id=adu[0])


def _ascii_body(frame: bytes) -> tuple[bytes | None, str | None]:
    """The bytes an ASCII frame spells (LRC included) and what is wrong with it."""
    if not frame.startswith(b":") or not frame.endswith(b"\r\n"):
        return None, "an ASCII frame starts with ':' and ends with CR LF"
    try:
        body = bytes.fromhex(frame[1:-2].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None, "characters that are not hex digits between ':' and CR LF"
    if len(body) < 3:
        return body, f"{len(body)} bytes: too short for an ASCII frame"
    if lrc(body[:-1]) != body[-1]:
        return body, f"bad LRC {body[-1]:02x} (computed {lrc(body[:-1]):02x})"
    return body, None


def encode_ascii(unit_id: int, pdu: bytes) -> bytes:
    """An ASCII frame: ':' unit id, ``pdu`` and LRC in upper-case hex, CR LF."""
    body = bytes([unit_id]) + pdu
    return b":" + (body + bytes([lrc(body)])).hex().upper().encode("ascii") + b"\r\n"
