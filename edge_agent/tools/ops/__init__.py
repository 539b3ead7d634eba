"""Commands a technician runs next to the service: ``status`` and ``export``.

They read the station file for where things are (the outbox, the health endpoint), ask
the running agent through its health endpoint (edge_agent/health), or read the outbox
file read-only (edge_agent/store/readonly.py). They never change the outbox.
"""
