"""Raw sockets against the health endpoint: requests that urllib would refuse to send,
slow and half-sent requests, resets; and what the agent process holds meanwhile (open
file descriptors and resident memory, read from /proc)."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

from support.health import Scrape, detector_server, detectors, get, logged_port, scrape
from support.station import AgentProcess, write_station
from support.waiting import wait_until


class Endpoint:
    """A running agent process and its health endpoint's port."""

    def __init__(self, process: AgentProcess, port: int) -> None:
        self.process, self.port = process, port

    @property
    def pid(self) -> int:
        assert self.process.process is not None
        return self.process.process.pid

    def log_lines(self, text: str) -> list[str]:
        return [line for line in self.process.log().splitlines() if text in line]


@contextlib.contextmanager
def running_agent(tmp_path: Path) -> Iterator[Endpoint]:
    """``edge-agent run`` as a process, polling one simulated detector, its broker
    unreachable (not a reason to be unhealthy), its endpoint answering 200 ok."""
    server = detector_server()
    links, devices = detectors(server.tcp_port)
    path = write_station(tmp_path / "station.yaml", broker_port=1, links=links,
                         devices=devices[:1])
    process = AgentProcess(path, tmp_path / "agent.log").start().wait_running()
    try:
        wait_until(lambda: logged_port(process.log()) is not None, 30, "the endpoint")
        port = logged_port(process.log())
        assert port is not None
        wait_until(lambda: get(port, "/healthz") == (200, "ok\n"), 30, "a healthy agent")
        yield Endpoint(process, port)
    finally:
        if process.alive():
            process.terminate()
        server.stop()


def connect(port: int, timeout_s: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout_s)


def exchange(port: int, data: bytes, timeout_s: float = 30) -> bytes:
    """Send ``data`` on a new connection and read until the endpoint closes it."""
    with connect(port, timeout_s) as conn:
        # Answered and closed before all was sent: the answer may still be there.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(data)
        return read_all(conn)


def read_all(conn: socket.socket) -> bytes:
    """What the endpoint sends until it closes; b"" if it reset the connection first."""
    chunks = []
    try:
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def status_of(answer: bytes) -> int | None:
    """The status code of a raw HTTP answer, None when there is none."""
    if not answer.startswith(b"HTTP/1.0 "):
        return None
    return int(answer[9:12])


def reset(conn: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), as a crashing client or a firewall."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def client_errors(port: int) -> dict[str, float]:
    """edge_agent_health_client_errors_total by reason. Retried while the endpoint is
    busy (503): clients the test let go may still be held for their last second (an
    answered error waits up to 1 s for the client to stop sending before closing)."""
    wait_until(lambda: get(port, "/metrics")[0] == 200, 30, "a free connection")
    page: Scrape = scrape(port)
    return {dict(labels)["reason"]: value
            for labels, value in page.series("edge_agent_health_client_errors_total").items()}
