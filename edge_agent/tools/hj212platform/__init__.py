"""``edge-agent hj212-platform``: a small HJ 212 platform to point a station at. It
listens on TCP, checks every packet (length, CRC, fields, version) with the protocol layer
(edge_agent/hj212/), answers 9014 and 9013, logs each packet decoded, and sends commands
(history pulls, get/set time) to the stations connected. ``arguments.py`` is its command
line; ``server.py`` the listener; ``requests.py`` builds the commands; ``log.py`` writes
the readable and JSON-lines logs. The byte stream is cut into packets by
``edge_agent/hj212/framing.py``, which the station's session uses too.
"""
