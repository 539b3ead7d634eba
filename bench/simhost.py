"""The Modbus TCP simulators both pipelines poll, in a process of their own.

``python -m bench.simhost LINKS UNITS TAGS`` starts LINKS servers of the repo's own
simulator (edge_agent/tools/sim/simserver.py) on free ports, each serving unit ids
1..UNITS with TAGS float32 values on input registers 0..; prints the ports as one JSON
line, then serves until its standard input closes. A process of its own, so the
simulator's CPU is never counted as either pipeline's.
"""

from __future__ import annotations

import json
import struct
import sys

from bench.spec import tag_value
from edge_agent.tools.sim.simserver import SimServer, SimUnit


def unit_image(unit: int, tags: int) -> dict[int, int]:
    words = struct.unpack(f">{2 * tags}H",
                          struct.pack(f">{tags}f", *(tag_value(unit, i) for i in range(tags))))
    return dict(enumerate(words))


def main() -> None:
    links, units, tags = (int(arg) for arg in sys.argv[1:4])
    servers = [SimServer([SimUnit(unit, input=unit_image(unit, tags), size=max(64, 2 * tags))
                          for unit in range(1, units + 1)], tcp_port=0).start()
               for _ in range(links)]
    print(json.dumps([server.tcp_port for server in servers]), flush=True)
    sys.stdin.read()  # until the runner closes the pipe (or dies)
    for server in servers:
        server.stop()


if __name__ == "__main__":
    main()
