"""``edge-agent demo``: a whole simulated station on one machine (``station.py``); its
command line in ``arguments.py``."""
