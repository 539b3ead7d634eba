"""Bytes on the wire for one QoS 1 message, computed from the packet formats.

A subscriber sees a message's topic and payload, not the packets that carried it; what
a station costs on a metered link (a 4G modem, a VPN) is estimated here, from the
formats, so the estimate can be checked by reading it:

* MQTT 3.1.1 PUBLISH, QoS 1 (the agent's default ``mqtt.protocol``): 1 byte of packet
  type and flags, the remaining length (1 to 4 bytes, 7 bits per byte), a 2-byte topic
  length, the topic, a 2-byte packet id, the payload. MQTT 5 adds a properties length
  (1 byte when there are no properties, as the agent sends).
* PUBACK: 4 bytes (type, length 2, packet id) in 3.1.1 and in MQTT 5 when it reports
  success without properties (the broker may then omit the reason code).
* TCP/IPv4: 20 bytes of IPv4 header and 32 of TCP header (20 + the 12-byte timestamp
  option Linux sends) per segment; a packet longer than one segment's payload (1448
  bytes on a 1500-byte MTU with timestamps) takes several. Each packet is assumed to
  travel in segments of its own and the PUBACK to carry the TCP acknowledgement (no
  coalescing, no separate ACK): an estimate for a station's trickle, not for a drain.
* Not counted: Ethernet or radio framing, TLS (about 22 bytes per record with TLS 1.3
  AES-GCM: 5 header, 1 content type, 16 tag), keepalive PINGREQ/PINGRESP (2 bytes each,
  sent only when nothing else was sent for ``keepalive_s``), connects and disconnects.
"""

from __future__ import annotations

import math

TCP_IP_HEADER_BYTES = 52   # IPv4 20 + TCP 20 + timestamp option 12
SEGMENT_PAYLOAD_BYTES = 1448  # MSS on a 1500-byte MTU, less the timestamp option
PUBACK_BYTES = 4


def remaining_length_bytes(length: int) -> int:
    """Bytes of MQTT's variable-length integer for ``length`` (1..4)."""
    if not 0 <= length < 268_435_456:
        raise ValueError(f"MQTT remaining length out of range: {length}")
    size = 1
    while length >= 128:
        length //= 128
        size += 1
    return size


def publish_bytes(topic: str, payload_bytes: int, protocol: str = "3.1.1") -> int:
    """Size of one QoS 1 PUBLISH packet carrying ``payload_bytes`` on ``topic``."""
    properties = 1 if protocol == "5" else 0
    remaining = 2 + len(topic.encode()) + 2 + properties + payload_bytes
    return 1 + remaining_length_bytes(remaining) + remaining


def segments(packet_bytes: int) -> int:
    """TCP segments one packet needs when it travels alone."""
    return max(1, math.ceil(packet_bytes / SEGMENT_PAYLOAD_BYTES))


def ip_bytes_up(topic: str, payload_bytes: int, protocol: str = "3.1.1") -> int:
    """IP bytes from station to broker for one message (PUBLISH in its segments)."""
    packet = publish_bytes(topic, payload_bytes, protocol)
    return packet + segments(packet) * TCP_IP_HEADER_BYTES


def ip_bytes_down() -> int:
    """IP bytes from broker to station for one message: the PUBACK in one segment."""
    return PUBACK_BYTES + TCP_IP_HEADER_BYTES
