"""edge-agent: poll field analyzers, buffer every sample durably, forward over MQTT."""

__version__ = "0.1.0"
