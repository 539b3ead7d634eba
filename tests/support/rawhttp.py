"""Raw sockets against the health endpoint: requests that urllib would refuse to send,
slow and half-sent requests, resets; and what the agent process holds meanwhile (open
file descriptors and resident memory, read from /proc)."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from support.health import Scrape, scrape


def connect(port: int, timeout_s: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout_s)


def exchange(port: int, data: bytes, timeout_s: float = 30) -> bytes:
    """Send ``data`` on a new connection and read until the endpoint closes it."""
    with connect(port, timeout_s) as conn:
        try:
            conn.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before all was sent: the answer may still be there
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
    """edge_agent_health_client_errors_total by reason."""
    page: Scrape = scrape(port)
    return {dict(labels)["reason"]: value
            for labels, value in page.series("edge_agent_health_client_errors_total").items()}
