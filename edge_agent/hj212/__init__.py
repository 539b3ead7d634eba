"""The HJ 212 protocol layer (HJ 212-2017 and HJ 212-2025), with no I/O and no outbox.

What the layer knows: the packet (``packet.py``: framing, Flag bits, split packets), its
CRC (``crc.py``), the CP data region (``cp.py``), SM4 encryption of that region
(``sm4.py``, 2025 only), the pollutant code table (``codes.py`` + ``codes.yaml``), the data
flags derived from the agent's qualities and the statistics of one period
(``flags.py``, ``stats.py``). The uplink that sends from the station builds on these;
the platform simulator (edge_agent/tools/hj212platform/) uses them to check packets.
Only ``sm4.py`` imports ``cryptography``.
"""
