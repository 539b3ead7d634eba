"""Instruments' own ASCII protocols (``protocol: text`` links, driver ``serial-text``).

Pure parts, with no I/O and table tests: ``escapes`` (how a technician writes control
bytes), ``checksums``, ``framing`` (bytes -> frames), ``parse`` (frame -> values and
quality), ``settings`` (the typed configuration). ``client`` is the I/O edge: one
serial port or TCP connection per link.
"""
