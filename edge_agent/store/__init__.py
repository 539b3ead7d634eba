"""The durable outbox: every sample is committed here before anything else happens."""
