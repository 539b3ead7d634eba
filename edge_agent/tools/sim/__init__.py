"""Simulated instruments, serial line pairs and a private broker, for the demo and tests."""
