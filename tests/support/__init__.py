"""Real-process helpers for the tests: MQTT collector, agent subprocess, black-hole proxy."""
