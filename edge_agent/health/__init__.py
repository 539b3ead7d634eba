"""The agent's local HTTP endpoint, and what it reads from the running workers.

``server``: ``/healthz``, ``/metrics``, ``/status`` and the technician's page at ``/``,
started by the agent; ``page``: the page's static files (``page/``); ``access``: who may
read what (the token beyond loopback); ``connection``:
one HTTP exchange, with what a client may hold bounded; ``clienterrors``: misbehaving
clients counted and logged one line per reason per minute; ``view``: the narrow,
read-only view of the running agent that the agent builds and hands to the server
(nothing here imports ``edge_agent.agent``); ``snapshot``: the workers' own counters, read
through that view without stopping them; ``metrics``: the Prometheus text
format; ``histogram``: the forwarder's acknowledgement latency. Metric names and labels:
docs/metrics.md. The commands that read it (``edge-agent status``) are in
edge_agent/tools/ops.
"""
