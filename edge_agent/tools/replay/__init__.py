"""Replay a capture as a device: strict (only the recorded requests, in order) or from the
register image (any read inside the recorded ranges), over Modbus TCP or on an RTU port.

``script`` reads a capture's exchanges; ``strict`` and ``image``/``serve`` answer
requests (pure); ``tcp_server`` and ``rtu_server`` are the I/O. See docs/capture-replay.md.
"""
