"""Instruments that speak their own ASCII protocol (see README.md in this folder)."""
