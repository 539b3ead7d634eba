"""``edge-agent probe``: commissioning from the command line.

A technician reads a register range and sees every way it could be decoded, side by side,
to find which one matches the instrument's display; or scans a bus for unit ids that
answer. ``interpret`` and ``render`` are pure; ``command`` wires them to a link client.
"""
