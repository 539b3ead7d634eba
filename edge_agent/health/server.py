"""The agent's local HTTP endpoint: ``/healthz``, ``/metrics``, ``/status``.

Standard library only (``http.server`` in one thread, one short-lived thread per
request). Each request reads the workers' own counters (snapshot.py); nothing on the
pollers' or forwarder's paths waits for it.

* ``/healthz``: 200 ``ok`` while the pollers, the forwarder and the outbox writer are
  alive and the writer answers within 5 s; 503 with the reasons otherwise.
* ``/metrics``: Prometheus text format (metrics.py, docs/metrics.md).
* ``/status``: JSON, what ``edge-agent status`` shows.

The endpoint is a window, not a worker: if its port is taken, the agent runs on without
it, logs that once, and tries again with backoff until the port is free.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from edge_agent import __version__
from edge_agent.config.schema import HealthConfig
from edge_agent.health import metrics
from edge_agent.health.snapshot import Snapshot, take_snapshot
from edge_agent.retry import Backoff
from edge_agent.store.outbox import OutboxError

if TYPE_CHECKING:
    from edge_agent.agent import Agent

log = logging.getLogger(__name__)

ROUTES = ("/healthz", "/metrics", "/status")
_RETRY_MIN_S, _RETRY_MAX_S = 2.0, 60.0


class HealthServer:
    """Serves ``agent``'s health, metrics and status while started (if enabled)."""

    def __init__(self, config: HealthConfig, agent: Agent) -> None:
        self.config = config
        self._agent = agent
        self._started_at = time.time()
        self._dropped_at_start: int | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._bug_logged = False
        self.thread = threading.Thread(target=self._run, name="health-http", daemon=True)

    @property
    def port(self) -> int | None:
        """The port listened on (the real one when configured as 0); None while not bound."""
        with self._lock:
            return None if self._server is None else int(self._server.server_address[1])

    def start(self) -> None:
        """Start serving in the background; call before the workers start, so that
        'drops since start' starts from the outbox's count at start-up."""
        self._started_at = time.time()
        try:
            self._dropped_at_start = self._agent.outbox.depth().dropped_total
        except OutboxError as err:
            log.warning("cannot read the outbox's drop counter at start (%s); status will "
                        "not show drops since start", err)
        if self.config.enabled:
            self.thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            server = self._server
        if server is not None:
            server.shutdown()  # returns once serve_forever has left its loop
        if self.thread.ident is not None:
            self.thread.join(timeout=10)

    def snapshot(self) -> Snapshot:
        return take_snapshot(self._agent, self._started_at, self._dropped_at_start)

    # -- serving ------------------------------------------------------------------------

    def _run(self) -> None:
        server = self._bind()
        if server is None:
            return
        try:
            server.serve_forever(poll_interval=0.5)
        finally:
            server.server_close()

    def _bind(self) -> _Server | None:
        """Listen, retrying with backoff while the port is taken; None once stopped."""
        backoff = Backoff(_RETRY_MIN_S, _RETRY_MAX_S)
        failures = 0
        address = f"{_url_host(self.config.host)}:{self.config.port}"
        while not self._stop.is_set():
            try:
                server = _Server(self.config.host, self.config.port, self)
            except OSError as err:
                failures += 1
                if failures == 1:
                    log.error("health endpoint cannot listen on %s (%s); the agent runs on "
                              "without /healthz, /metrics and /status, retrying", address, err)
                self._stop.wait(backoff.delay_s(failures))
                continue
            with self._lock:
                if self._stop.is_set():
                    server.server_close()
                    return None
                self._server = server
            port = server.server_address[1]
            log.info("health endpoint listening on http://%s:%d (%s)%s",
                     _url_host(self.config.host), port, ", ".join(ROUTES),
                     f" after {failures} failed attempts" if failures else "")
            return server
        return None

    def answer(self, path: str) -> tuple[HTTPStatus, str, bytes]:
        """(status, content type, body) for a GET of ``path``."""
        route = path.split("?", 1)[0]
        if route not in ROUTES:
            listing = "".join(f"{r}\n" for r in ROUTES)
            return HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", listing.encode()
        try:
            snapshot = self.snapshot()
        except Exception:  # a bug here must not take anything else down
            if not self._bug_logged:
                self._bug_logged = True
                log.exception("health endpoint: cannot read the agent's state")
            return HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", b"internal error\n"
        if route == "/metrics":
            return HTTPStatus.OK, metrics.CONTENT_TYPE, metrics.render(snapshot).encode()
        if route == "/status":
            body = json.dumps(snapshot.to_json(), indent=2, ensure_ascii=False)
            return HTTPStatus.OK, "application/json", body.encode()
        if snapshot.healthy:
            return HTTPStatus.OK, "text/plain; charset=utf-8", b"ok\n"
        text = "unhealthy: " + "; ".join(snapshot.problems) + "\n"
        return HTTPStatus.SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", text.encode()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, owner: HealthServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.owner = owner
        super().__init__((host, port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = f"edge-agent/{__version__}"
    sys_version = ""
    timeout = 30  # a client that opens a connection and says nothing is dropped

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        status, content_type, body = self.server.owner.answer(self.path)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base name
        log.debug("health endpoint: %s %s", self.address_string(), format % args)
