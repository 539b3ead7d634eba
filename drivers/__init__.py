"""Instrument drivers (installed as ``edge_agent_drivers``; the folder is ``drivers/``).

One folder per driver kind; ``registry.py`` lists the kinds (see README.md there).
"""
