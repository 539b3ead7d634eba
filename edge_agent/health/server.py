"""The agent's local HTTP endpoint: ``/healthz``, ``/metrics``, ``/status``, and the page.

Standard library only: an asyncio loop in one thread (``health-http``) holds the
connections, with every resource a client can take bounded (connection.py: number of
connections, request size, time); the answers are computed by at most ANSWER_THREADS
threads, since reading the outbox may wait up to 5 s. Each request reads the workers' own
counters through the agent's read-only view (view.py, snapshot.py); nothing on the
pollers' or forwarder's paths waits for it. Client errors are counted and logged one line
per reason per minute (clienterrors.py).

* ``/healthz``: 200 ``ok`` while the pollers, the forwarder and the outbox writer are
  alive and the writer answers within 5 s; 503 with the reasons otherwise.
* ``/metrics``: Prometheus text format (metrics.py, docs/metrics.md).
* ``/status``: JSON, what ``edge-agent status`` shows, and what the page fetches.
* ``/`` and ``/page/*``: the technician's page (page.py, docs/web-page.md): static files
  shipped in the package; the browser fetches ``/status`` every few seconds.

Who may read what: access.py (open on loopback; beyond it, the token for all but
``/healthz``).

snapshot.py and metrics.py are imported by the first request that needs them: a station
whose endpoint nobody asks keeps them out of memory (issue 11, RSS; docs/performance.md,
Memory). A station that is scraped loads them with its first scrape.

The endpoint is a window, not a worker: if its port is taken, the agent runs on without
it, logs that once, and tries again with backoff until the port is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from edge_agent.config.schema import HealthConfig
from edge_agent.health import page
from edge_agent.health.access import Access
from edge_agent.health.clienterrors import ClientErrors
from edge_agent.health.connection import Answer, Connections, Request
from edge_agent.retry import Backoff
from edge_agent.store.outbox import OutboxError

if TYPE_CHECKING:
    from edge_agent.health.snapshot import Snapshot
    from edge_agent.health.view import AgentView

log = logging.getLogger(__name__)

ROUTES = ("/healthz", "/metrics", "/status", *page.ROUTES)
# Read when used (not bound at import), so a test can shorten them with monkeypatch.
BIND_RETRY_MIN_S, BIND_RETRY_MAX_S = 2.0, 60.0  # backoff while the port is taken
ANSWER_THREADS = 4
_BACKLOG = 64
OUTBOX_TIMEOUT_S = 5.0  # how long an answer waits for the outbox writer (then: unhealthy)


class HealthServer:
    """Serves the health, metrics and status of the agent behind ``view`` while started
    (if enabled)."""

    def __init__(self, config: HealthConfig, view: AgentView) -> None:
        self.config = config
        self._view = view
        self._started_at = time.time()
        self._dropped_at_start: int | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._port: int | None = None
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._bug_logged = False
        self._loop_error_logged_at: float | None = None
        self.access = Access(config)
        self.client_errors = ClientErrors()
        self.connections = Connections(self._answer_off_loop, self.client_errors,
                                       self._report)
        self._pool: ThreadPoolExecutor | None = None
        self.thread = threading.Thread(target=self._run, name="health-http", daemon=True)

    @property
    def port(self) -> int | None:
        """The port listened on (the real one when configured as 0); None while not bound."""
        with self._lock:
            return self._port

    def start(self) -> None:
        """Start serving in the background; call before the workers start, so that
        'drops since start' starts from the outbox's count at start-up."""
        self._started_at = time.time()
        try:
            self._dropped_at_start = self._view.outbox_depth(OUTBOX_TIMEOUT_S).dropped_total
        except OutboxError as err:
            log.warning("cannot read the outbox's drop counter at start (%s); status will "
                        "not show drops since start", err)
        if self.config.enabled:
            self.thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            wake = self._wake
        if wake is not None:
            loop, stopping = wake
            with contextlib.suppress(RuntimeError):  # the loop has closed already
                loop.call_soon_threadsafe(stopping.set)
        if self.thread.ident is not None:
            self.thread.join(timeout=10)

    def snapshot(self) -> Snapshot:
        from edge_agent.health.snapshot import EndpointView, take_snapshot

        endpoint = EndpointView(self.connections.open, self.connections.max_connections,
                                self.client_errors.snapshot())
        return replace(take_snapshot(self._view, self._started_at, self._dropped_at_start,
                                     OUTBOX_TIMEOUT_S),
                       endpoint=endpoint)

    # -- serving ------------------------------------------------------------------------

    def _run(self) -> None:
        listener = self._bind()
        if listener is None:
            return
        try:
            asyncio.run(self._serve(listener))
        finally:
            listener.close()

    async def _serve(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_error)
        stopping = asyncio.Event()
        with self._lock:
            if self._stop.is_set():
                return
            self._wake = (loop, stopping)
        self._pool = ThreadPoolExecutor(ANSWER_THREADS, thread_name_prefix="health-answer")
        accepting = asyncio.create_task(self.connections.accept_forever(listener))
        try:
            await stopping.wait()
        finally:
            accepting.cancel()
            self.connections.cancel_all()
            await asyncio.sleep(0)  # let the cancelled connections close their sockets
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _answer_off_loop(self, request: Request) -> Answer:
        assert self._pool is not None
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self.answer, request.target, request.authorization)

    def _report(self, what: str, error: BaseException) -> None:
        """Not a client's fault (accept() failing with EMFILE, a bug): see _loop_error."""
        self._loop_error(None, {"message": what, "exception": error})

    def _loop_error(self, _loop: object, context: dict[str, Any]) -> None:
        """What asyncio reports outside a connection's task: one line a minute at most,
        with a traceback only for what is not the system's state (a bug of ours)."""
        now = time.monotonic()
        if self._loop_error_logged_at is not None \
                and now - self._loop_error_logged_at < self.client_errors.interval_s:
            return
        self._loop_error_logged_at = now
        error = context.get("exception")
        log.warning("health endpoint: %s%s", context.get("message", "event loop error"),
                    f" ({type(error).__name__}: {error})" if error else "",
                    # OSError (EMFILE, ...) is the system's state: its name says it all;
                    # anything else is a bug in this package: show where, once a minute.
                    exc_info=error if error and not isinstance(error, OSError) else None)

    def _bind(self) -> socket.socket | None:
        """Listen, retrying with backoff while the port is taken; None once stopped."""
        backoff = Backoff(BIND_RETRY_MIN_S, BIND_RETRY_MAX_S)
        failures = 0
        address = f"{_url_host(self.config.host)}:{self.config.port}"
        while not self._stop.is_set():
            try:
                listener = _listen(self.config.host, self.config.port)
            except OSError as err:
                failures += 1
                if failures == 1:
                    log.error("health endpoint cannot listen on %s (%s); the agent runs on "
                              "without /healthz, /metrics and /status, retrying", address, err)
                self._stop.wait(backoff.delay_s(failures))
                continue
            port = int(listener.getsockname()[1])
            with self._lock:
                if self._stop.is_set():
                    listener.close()
                    return None
                self._port = port
            log.info("health endpoint listening on http://%s:%d (%s)%s%s",
                     _url_host(self.config.host), port,
                     ", ".join(r for r in ROUTES if not r.startswith("/page/")),
                     "; the token is required for all but /healthz"
                     if self.access.token_required else "",
                     f" after {failures} failed attempts" if failures else "")
            return listener
        return None

    def answer(self, path: str, authorization: str | None = None) -> Answer:
        """(status, content type, body[, headers]) for a GET of ``path`` with the request's
        Authorization header (access.py)."""
        route = path.split("?", 1)[0]
        refused = self.access.refusal(route, authorization)
        if refused is not None:
            return refused
        if route not in ROUTES:
            listing = "".join(f"{r}\n" for r in ROUTES if not r.startswith("/page/"))
            return HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", listing.encode()
        if route in page.ROUTES:
            return page.asset(route)
        try:
            return _render(route, self.snapshot())
        except Exception:  # a bug here must not take anything else down
            if not self._bug_logged:
                self._bug_logged = True
                log.exception("health endpoint: cannot read the agent's state")
            return HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", b"internal error\n"


def _render(route: str, snapshot: Snapshot) -> Answer:
    if route == "/metrics":
        from edge_agent.health import metrics

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


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port), with SO_REUSEADDR as http.server set it."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(_BACKLOG)
    except OSError:
        listener.close()
        raise
    return listener
