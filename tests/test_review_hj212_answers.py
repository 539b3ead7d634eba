"""Review finding on the HJ 212 session: a 9014 whose QN matches no upload waiting (the
platform answered after the station gave up, or answered a QN it made up) was logged at
INFO every time and counted nowhere. It is now counted as ``unmatched_answers`` (in the
session's counters, and in the uplink's ``rejected`` beside bad packets) and logged at
most once a minute. Real TCP socket as the platform."""

from __future__ import annotations

import logging

from test_hj212_session import MN, REGION, FakePlatform, connected, session

from edge_agent.hj212.packet import Flag, Packet, Version, encode
from edge_agent.hj212.session import Upload

__all__ = ["session"]  # fixture used by name
STRAYS = 5


def stray_9014(n: int, cn: str = "9014") -> bytes:
    """A well-formed answer (9014 by default) for a QN the station never sent."""
    return encode(Packet(st="91", cn=cn, pw="123456", mn=MN,
                         qn=f"2026010100000{n:04d}", flag=Flag(Version.HJ212_2017))).encode()


def test_answers_to_no_waiting_upload_are_counted_and_logged_once(session, caplog):
    fake = FakePlatform()

    def answer(upload: Packet) -> str:
        return encode(Packet(st="91", cn="9014", pw="123456", mn=MN, qn=upload.qn,
                             flag=Flag(Version.HJ212_2017)))

    fake.answer_with(b"".join(stray_9014(n) for n in range(STRAYS)), answer)
    one = connected(session(fake.port))
    with caplog.at_level(logging.INFO, logger="edge_agent.hj212.session"):
        assert one.send(Upload("2011", REGION)).delivered
    counts = one.counts()
    assert counts["unmatched_answers"] == STRAYS
    assert counts["bad_packets"] == 0  # well-formed: not a bad packet
    logged = [r for r in caplog.records if "answers nothing waiting" in r.getMessage()]
    assert len(logged) == 1


def test_9011_and_9012_the_station_never_asked_for_are_counted_not_logged_each(session, caplog):
    """The station sends no request, so a platform's 9011/9012 answers nothing: counted
    with the other unmatched answers and logged once, not once per packet."""
    fake = FakePlatform()

    def answer(upload: Packet) -> str:
        return encode(Packet(st="91", cn="9014", pw="123456", mn=MN, qn=upload.qn,
                             flag=Flag(Version.HJ212_2017)))

    strays = [stray_9014(n, cn) for n in range(STRAYS) for cn in ("9011", "9012")]
    fake.answer_with(b"".join(strays), answer)
    one = connected(session(fake.port))
    with caplog.at_level(logging.INFO, logger="edge_agent.hj212.session"):
        assert one.send(Upload("2011", REGION)).delivered
    assert one.counts()["unmatched_answers"] == 2 * STRAYS
    logged = [r for r in caplog.records if "answers nothing" in r.getMessage()]
    assert len(logged) == 1
