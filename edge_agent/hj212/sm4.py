"""SM4 encryption of the CP data region, as HJ 212-2025 §6.4 and Appendix A.2 define it.

SM4, 16-byte key, ECB, no padding: every whole 16-byte block of the region (the text
between ``CP=&&`` and ``&&``) is encrypted, a shorter tail stays plaintext, and the
ciphertext is written as ``{0xE4,0x3E,…}`` in front of that tail. The CRC and (in the
standard's examples) the length field stay those of the plaintext segment. Encrypted are
station→platform data commands (CN 2000–2999) and CN 1014 and 3020 (§6.4.4); nothing under
2017. The one module that imports ``cryptography`` (its ``algorithms.SM4`` with
``modes.ECB`` reproduces the standard's example ciphertext byte for byte; padding
libraries such as gmssl's ``crypt_ecb`` cannot, they pad).
"""

from __future__ import annotations

import re

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
_CIPHERTEXT = re.compile(r"\{(0x[0-9A-Fa-f]{2}(?:,0x[0-9A-Fa-f]{2})*)\}")


class Sm4Error(ValueError):
    """An SM4 region that cannot be encrypted or decrypted (bad key, bad braces)."""


def key_from_text(text: str) -> bytes | None:
    """The 16 key bytes of a key as platforms hand it out: 32 hex digits, or 16 ASCII
    characters (the standard's example key is ``0000000000000000``); None otherwise."""
    if re.fullmatch(r"[0-9A-Fa-f]{32}", text):
        return bytes.fromhex(text)
    if len(text) == 16 and text.isascii():
        return text.encode("ascii")
    return None


def needs_encryption(cn: str) -> bool:
    """Whether HJ 212-2025 §6.4.4 encrypts packets with command code ``cn``."""
    return (cn.isdigit() and 2000 <= int(cn) <= 2999) or cn in ("1014", "3020")


def is_encrypted(region: str) -> bool:
    """Whether a CP region starts with the ``{0x..,…}`` ciphertext form."""
    return _CIPHERTEXT.match(region) is not None


def _cipher(key: bytes) -> Cipher[modes.ECB]:
    if len(key) != BLOCK:
        raise Sm4Error(f"SM4 key must be 16 bytes, got {len(key)}")
    return Cipher(algorithms.SM4(key), modes.ECB())


def encrypt_region(region: str, key: bytes) -> str:
    """The region as sent: whole blocks as ``{0x..}``, the tail (< 16 bytes) as it is.
    A region shorter than one block is sent as plaintext, as the standard's rule gives."""
    try:
        data = region.encode("ascii")
    except UnicodeEncodeError as err:
        # A block edge inside a multi-byte character would leave the tail undecodable.
        raise Sm4Error(f"SM4 region must be ASCII; {err.object[err.start:err.end]!r} "
                       f"at character {err.start} is not") from None
    whole = len(data) - len(data) % BLOCK
    if whole == 0:
        return region
    encryptor = _cipher(key).encryptor()
    ciphertext = encryptor.update(data[:whole]) + encryptor.finalize()
    braces = ",".join(f"0x{byte:02X}" for byte in ciphertext)
    return "{" + braces + "}" + region[whole:]


def decrypt_region(sent: str, key: bytes) -> str:
    """The plaintext region of an encrypted one (``{0x..}`` + tail)."""
    match = _CIPHERTEXT.match(sent)
    if match is None:
        raise Sm4Error("data region does not start with the {0x..,…} ciphertext form")
    ciphertext = bytes(int(item, 16) for item in match.group(1).split(","))
    if len(ciphertext) % BLOCK:
        raise Sm4Error(f"ciphertext is {len(ciphertext)} bytes, not a multiple of 16")
    decryptor = _cipher(key).decryptor()
    plain = decryptor.update(ciphertext) + decryptor.finalize()
    try:
        text = plain.decode("ascii")
    except UnicodeDecodeError:
        raise Sm4Error("decrypted region is not text: wrong SM4 key?") from None
    if not text.isprintable():
        raise Sm4Error("decrypted region is not text: wrong SM4 key?")
    return text + sent[match.end():]
