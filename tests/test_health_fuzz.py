"""Fuzzing the health endpoint (issue 9): random bytes and mutated HTTP requests, bounded in
time, seeded, on every run. EDGE_AGENT_FUZZ_SEED=<n> replays another sequence.

Two levels: the request reader alone (thousands of inputs, in this process: only a
Request or a ClientError may come out), and a real agent process hit over real sockets
(its endpoint keeps answering valid requests, its log has no traceback, and its file
descriptors and memory stay bounded)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections import deque
from collections.abc import Iterator

import pytest
from support.health import get
from support.rawhttp import (
    Endpoint,
    connect,
    open_fds,
    read_all,
    reset,
    rss_bytes,
    running_agent,
    status_of,
)
from support.waiting import wait_until

from edge_agent.health.connection import (
    MAX_CONNECTIONS,
    MAX_LINE_BYTES,
    ClientError,
    ClientGone,
    Request,
    read_request,
)

pytestmark = pytest.mark.sweep  # fuzzing: run by scripts/test, left out by --fast

SEED = int(os.environ.get("EDGE_AGENT_FUZZ_SEED", "20261203"))
MB = 1024 * 1024
VALID = [
    b"GET /healthz HTTP/1.1\r\nHost: agent\r\nUser-Agent: probe\r\n\r\n",
    b"GET /metrics HTTP/1.0\r\nAccept: text/plain\r\n\r\n",
    b"GET /status?x=1 HTTP/1.1\r\nHost: [::1]:9108\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"HEAD /healthz HTTP/1.1\r\n\r\n",
]
ANSWERS = {200, 400, 404, 408, 414, 431, 501, 503}


@pytest.fixture
def endpoint(tmp_path) -> Iterator[Endpoint]:
    with running_agent(tmp_path) as running:
        yield running


def mutate(rng: random.Random) -> bytes:
    """A valid request with a few random edits, or random bytes, or a giant."""
    kind = rng.random()
    if kind < 0.15:
        return rng.randbytes(rng.randrange(0, 3000))
    if kind < 0.2:
        piece = rng.choice([b"X-A: " + b"z" * 900 + b"\r\n", b"\r", b"a", b" "])
        return b"GET /healthz HTTP/1.1\r\n" + piece * rng.randrange(10, 2 * MAX_LINE_BYTES)
    data = bytearray(rng.choice(VALID))
    for _ in range(rng.randrange(1, 5)):
        at = rng.randrange(len(data) + 1)
        edit = rng.randrange(5)
        if edit == 0 and at < len(data):
            data[at] = rng.randrange(256)
        elif edit == 1:
            data[at:at] = rng.randbytes(rng.randrange(1, 20))
        elif edit == 2:
            del data[at:at + rng.randrange(1, 20)]
        elif edit == 3:
            data[at:at] = data[at:at + rng.randrange(1, 200)] * rng.randrange(2, 60)
        else:
            del data[at:]
    return bytes(data)


async def _read(data: bytes, eof: bool) -> Request | None:
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    try:
        return await asyncio.wait_for(read_request(reader), 0.5)
    except (ClientError, ClientGone, TimeoutError):
        return None


def test_the_request_reader_turns_any_input_into_a_request_or_a_client_error():
    rng = random.Random(SEED)
    parsed = 0
    deadline = time.monotonic() + 10

    async def run() -> int:
        count = 0
        for case in range(3000):
            if time.monotonic() > deadline:
                break
            data = mutate(rng)
            request = await _read(data, eof=True)
            if request is not None:
                count += 1
                assert request.method.isascii() and request.method.strip() == request.method
                assert " " not in request.target, (SEED, case, data[:200])
        return count

    parsed = asyncio.run(run())
    assert parsed > 100, f"seed {SEED}: the mutations must keep many requests valid"


@pytest.mark.real_parts  # an agent process
def test_random_and_mutated_requests_leave_the_endpoint_answering_and_bounded(endpoint):
    rng = random.Random(SEED)
    fds_before = open_fds(endpoint.pid)
    for _ in range(3):  # warm up the pages the answers use
        get(endpoint.port, "/metrics")
        get(endpoint.port, "/status")
    rss_before = rss_bytes(endpoint.pid)
    held: deque[socket.socket] = deque()
    most_fds, most_rss = fds_before, rss_before
    answers: dict[int | None, int] = {}
    deadline = time.monotonic() + 15
    rounds = 0
    try:
        while time.monotonic() < deadline and rounds < 3000:
            rounds += 1
            conn = connect(endpoint.port)
            with contextlib.suppress(OSError):  # refused mid-send (431, 414): answered
                conn.sendall(mutate(rng))
            action = rng.random()
            if action < 0.5:  # the client is done sending: read whatever comes back
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_WR)
                answer = status_of(read_all(conn))
                answers[answer] = answers.get(answer, 0) + 1
                assert answer in ANSWERS | {None}, (SEED, rounds, answer)
                conn.close()
            elif action < 0.65:
                reset(conn)
            elif action < 0.75:
                conn.close()
            else:  # hold it open, up to 40 at once: more than the endpoint accepts
                held.append(conn)
                while len(held) > 40:
                    old = held.popleft()
                    reset(old) if rng.random() < 0.5 else old.close()
            if rounds % 20 == 0:
                most_fds = max(most_fds, open_fds(endpoint.pid))
                most_rss = max(most_rss, rss_bytes(endpoint.pid))
                code, _ = get(endpoint.port, "/healthz")  # answered even when busy
                assert code in (200, 503), (SEED, rounds, code)
    finally:
        for conn in held:
            conn.close()
    wait_until(lambda: get(endpoint.port, "/healthz") == (200, "ok\n"), 30,
               "the endpoint to answer once the fuzzing clients are gone")
    log = endpoint.process.log()
    assert endpoint.process.alive()
    assert "Traceback" not in log and "Unhandled" not in log, f"seed {SEED}"
    assert most_fds <= fds_before + MAX_CONNECTIONS + 1, (SEED, fds_before, most_fds)
    assert most_rss - rss_before < 30 * MB, (SEED, rss_before, most_rss)
    assert answers.get(200, 0) > 0 and len(answers) >= 4, (SEED, answers)
    print(f"seed {SEED}: {rounds} connections, answers {answers}, fds {fds_before}->"
          f"{most_fds}, rss {rss_before // 1024} kB -> {most_rss // 1024} kB")
