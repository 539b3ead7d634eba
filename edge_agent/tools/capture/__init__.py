"""Capture and replay of device traffic: record what a real instrument says, in the field,
and replay it as a device in CI.

The capture format (``format.py``, docs/capture-format.md) is the contract between the
recorders (``proxy.py``, ``pcap_import.py``, ``recorder.py`` on the agent's own links) and
the replay servers (``edge_agent.tools.replay``).
Framing is ours (``modbus_frames.py``, ``mbap_stream.py``): a capture tool must keep
malformed frames exactly as they came. ``commands.py`` runs the command lines that
``edge_agent.tools.capture.arguments`` defines.
"""
