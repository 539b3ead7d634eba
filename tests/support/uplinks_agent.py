"""``edge-agent run`` with extra MQTT uplinks built in Python, as a child process (so a
test can SIGKILL it). The ``uplinks:`` station-file section is read by another change;
until that reader exists, tests add the uplinks here, on top of the station file.

Run: ``python uplinks_agent.py STATION_FILE NAME=PORT [NAME=PORT ...]``: each NAME is an
MQTT uplink carrying every device, to 127.0.0.1:PORT, with the ``mqtt:`` section's other
settings.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

from edge_agent.agent import Agent, install_stop_signals, run_until_signalled
from edge_agent.config.loader import load_config
from edge_agent.config.schema import StationConfig, UplinkConfig


def with_uplinks(config: StationConfig, ports: dict[str, int]) -> StationConfig:
    """``config`` plus one MQTT uplink per name, to 127.0.0.1:port."""
    assert config.mqtt is not None
    return dataclasses.replace(config, uplinks=tuple(
        UplinkConfig(name, "mqtt", None, dataclasses.replace(
            config.mqtt, host="127.0.0.1", port=port, brokers=(),
            client_id=f"{config.mqtt.client_id}-{name}"))
        for name, port in ports.items()))


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    stop = install_stop_signals()
    path = Path(argv[0])
    ports = {name: int(port) for name, port in (item.split("=") for item in argv[1:])}
    config = with_uplinks(load_config(path), ports)
    return run_until_signalled(Agent(config, lambda p: with_uplinks(load_config(p), ports)),
                               stop)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
