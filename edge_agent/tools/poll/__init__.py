"""``edge-agent poll``: read every device of a station file once, through the agent's own
drivers and link clients, and print what the agent would store, without storing or
publishing anything (docs/operations.md)."""
