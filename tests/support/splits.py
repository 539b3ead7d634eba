"""Bytes fed the ways a port can deliver them: whole, in halves, byte by byte (as
pymodbus's framer tests feed recorded frames). A deframer must give the same frames and
faults each way."""

from __future__ import annotations

SPLITS = ("whole", "halves", "byte-by-byte")


def pieces(data: bytes, how: str) -> list[bytes]:
    """``data`` cut as ``how`` (one of ``SPLITS``) says."""
    if how == "whole":
        return [data]
    if how == "halves":
        return [data[:len(data) // 2], data[len(data) // 2:]]
    if how == "byte-by-byte":
        return [data[i:i + 1] for i in range(len(data))]
    raise ValueError(f"how: expected one of {SPLITS}, found {how!r}")
