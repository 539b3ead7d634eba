"""The HJ 212 protocol layer (HJ 212-2017 and HJ 212-2025) and the platform session; no
outbox access anywhere here.

What the layer knows: the packet (``packet.py``: framing, Flag bits, split packets), its
CRC (``crc.py``), the CP data region (``cp.py``), SM4 encryption of that region
(``sm4.py``, 2025 only), the pollutant code table (``codes.py`` + ``codes.yaml``), the data
flags derived from the agent's qualities and the statistics of one period
(``flags.py``, ``stats.py``). Pure too: the answers to a platform's requests
(``responder.py``). With I/O: what the platform set, kept in a small state file
(``platform_state.py``), and ``session.py``, one TCP session with one platform
(``session_types.py`` its settings and results, ``framing.py`` cuts its stream). The
uplink that sends from the outbox builds on these;
the platform simulator (edge_agent/tools/hj212platform/) uses them to check packets.
Only ``sm4.py`` imports ``cryptography``.
"""
