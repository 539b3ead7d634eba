"""The public HJ 212 packets (tests/fixtures/hj212/public_packets.txt, numbered as its
README numbers them) and the standard's example SM4 key, shared by the HJ 212 tests."""

from __future__ import annotations

from pathlib import Path

PACKETS = (Path(__file__).resolve().parents[1] / "fixtures" / "hj212" / "public_packets.txt"
           ).read_text(encoding="utf-8").splitlines()
KEY = b"0" * 16  # HJ 212-2025 Appendix A.2's key: 16 × '0' (0x30)


def public(number: int) -> str:
    """Public packet #number (1-based, as the notes number them)."""
    return PACKETS[number - 1]
