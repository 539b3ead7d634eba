"""The responder's answers to the platform's requests, fed the public packets of the
standard's flows (tests/fixtures/hj212/public_packets.txt): set time with a 13-digit QN,
get time, history pulls with and without data, timeout/retries, intervals and password
kept across restarts in the state file, 2081 after a restart, 9013 for notices, and a
9012 refusal with a logged reason for what is not supported."""

from __future__ import annotations

import logging
import os
import stat
from datetime import datetime
from pathlib import Path

import pytest
from support.hj212 import public

from edge_agent.hj212.crc import CrcVariant
from edge_agent.hj212.packet import Flag, Packet, ParseOptions, Version, encode, parse
from edge_agent.hj212.platform_state import PlatformStateFile
from edge_agent.hj212.reply import Reply
from edge_agent.hj212.responder import Intervals, Responder
from edge_agent.hj212.session import SessionSettings

NOW = datetime(2026, 3, 15, 10, 20, 30)
MN = "DXCBZ000000005"
# public packet 17 carries the Modbus CRC, high byte first, as some platforms send it
LENIENT = ParseOptions(accept_crc=frozenset({CrcVariant.HJ212, CrcVariant.MODBUS_HIGH_FIRST}))


class Station:
    """A responder with a state file, a history of records and a clock that records."""

    def __init__(self, tmp_path: Path, *, allow_set_clock: bool = False,
                 records: list[str] | None = None) -> None:
        self.path = tmp_path / "hj212-city.json"
        self.records = records or []
        self.pulled: list[tuple[str, datetime, datetime]] = []
        self.clock_set: list[datetime] = []
        self.responder = self.make(allow_set_clock)

    def make(self, allow_set_clock: bool = False) -> Responder:
        return Responder("123456", PlatformStateFile(self.path), self.history,
                         intervals=Intervals(30, 10), allow_set_clock=allow_set_clock,
                         set_clock=self.clock_set.append, started_at=datetime(2026, 3, 15, 9))

    def history(self, cn: str, begin: datetime, end: datetime) -> list[str]:
        self.pulled.append((cn, begin, end))
        return self.records

    def ask(self, raw: str) -> list[Reply]:
        return list(self.responder.respond(parse(raw, LENIENT), NOW))


def command(cn: str, cp: str, pw: str = "123456", qn: str = "20260315102030001") -> str:
    return encode(Packet(st="21", cn=cn, pw=pw, mn=MN, cp=cp, qn=qn,
                         flag=Flag(Version.HJ212_2017, ack=True)))


def test_set_time_with_a_13_digit_qn_sets_the_clock_when_allowed_and_echoes_the_qn(tmp_path):
    station = Station(tmp_path, allow_set_clock=True)
    replies = station.ask(public(9))
    assert replies == [Reply("9011", "QnRtn=1", "1617937097417"),
                       Reply("9012", "ExeRtn=1", "1617937097417")]
    assert station.clock_set == [datetime(2016, 8, 1, 8, 58, 57)]
    # the 9011 as sent is the public one, but for the Flag (answers ask for no answer)
    sent = Packet(st="21", cn="9011", pw="123456", mn=MN, cp=replies[0].cp,
                  qn=replies[0].answer_to, flag=Flag(Version.HJ212_2017, ack=True))
    assert encode(sent, echoed_qn=True) == public(10) + "\r\n"


def test_set_time_is_refused_with_exertn_3_when_the_station_file_does_not_allow_it(
        tmp_path, caplog):
    station = Station(tmp_path, allow_set_clock=False)
    with caplog.at_level(logging.WARNING):
        replies = station.ask(public(9))
    assert [r.cp for r in replies] == ["QnRtn=1", "ExeRtn=3"]
    assert station.clock_set == []
    assert "does not allow the platform to set it" in caplog.text


def test_get_time_answers_9011_the_time_and_9012(tmp_path):
    replies = Station(tmp_path).ask(public(1))
    qn = "20240601085857223"
    assert replies == [Reply("9011", "QnRtn=1", qn), Reply("1011", "SystemTime=20260315102030",
                                                         qn), Reply("9012", "ExeRtn=1", qn)]


def test_a_history_pull_sends_9011_each_record_as_an_upload_then_9012(tmp_path):
    records = ["DataTime=20170302000000;a25002-Avg=0.01,a25002-Flag=N",
               "DataTime=20170302001000;a25002-Avg=0.02,a25002-Flag=N"]
    station = Station(tmp_path, records=records)
    replies = station.ask(public(17))
    qn = "20170302150101001"
    assert replies == [Reply("9011", "QnRtn=1", qn), *(Reply("2051", r) for r in records),
                       Reply("9012", "ExeRtn=1", qn)]
    assert station.pulled == [("2051", datetime(2017, 3, 2), datetime(2017, 3, 3))]


def test_a_history_pull_with_no_data_ends_with_exertn_100(tmp_path):
    replies = Station(tmp_path).ask(public(17))
    assert [(r.cn, r.cp) for r in replies] == [("9011", "QnRtn=1"), ("9012", "ExeRtn=100")]


def test_a_history_pull_without_its_times_is_a_bad_condition(tmp_path):
    replies = Station(tmp_path).ask(command("2061", "BeginTime=20260315000000"))
    assert [r.cp for r in replies] == ["QnRtn=1", "ExeRtn=3"]


def test_timeout_retries_intervals_and_password_survive_a_restart(tmp_path):
    station = Station(tmp_path)
    for cn, cp in (("1000", "OverTime=20;ReCount=5"), ("1062", "RtdInterval=60"),
                   ("1064", "MinInterval=5"), ("1072", "NewPW=654321")):
        assert station.ask(command(cn, cp))[-1].cp == "ExeRtn=1", cn
    again = station.make()  # the agent restarted: a new responder reads the file
    settings = again.adjust(SessionSettings("h", 1, st="21", pw="123456", mn=MN))
    assert (settings.timeout_s, settings.retries, settings.pw) == (20, 5, "654321")
    assert again.intervals() == Intervals(60, 5)
    assert stat.S_IMODE(os.stat(station.path).st_mode) == 0o600
    assert [r.cp for r in list(again.respond(parse(command("1061", "")), NOW))] == \
        ["QnRtn=3"]  # the old password is now wrong
    assert [r.cp for r in again.respond(parse(command("1063", "", pw="654321")), NOW)] == \
        ["QnRtn=1", "MinInterval=5", "ExeRtn=1"]


@pytest.mark.parametrize(("cn", "cp"), [("1000", "OverTime=0;ReCount=3"),
                                        ("1000", "OverTime=10"),
                                        ("1062", "RtdInterval=10"),
                                        ("1064", "MinInterval=7"),
                                        ("1072", "NewPW=far-too-long")])
def test_out_of_range_settings_are_refused_and_not_kept(tmp_path, cn, cp):
    station = Station(tmp_path)
    assert [r.cp for r in station.ask(command(cn, cp))] == ["QnRtn=1", "ExeRtn=3"]
    assert not station.path.exists()


def test_a_damaged_state_file_is_ignored_and_the_station_files_values_apply(tmp_path):
    (tmp_path / "hj212-city.json").write_text("{not json", encoding="utf-8")
    station = Station(tmp_path)
    assert station.responder.intervals() == Intervals(30, 10)
    assert station.responder.password == "123456"


def test_unsupported_requests_get_a_9012_refusal_and_the_reason_is_logged(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        replies = Station(tmp_path).ask(command("3020", "PolId=w01018"))
    assert replies == [Reply("9012", "ExeRtn=2", "20260315102030001")]
    assert "CN=3020 refused" in caplog.text and "does not support it" in caplog.text


def test_notices_are_answered_9013(tmp_path):
    replies = Station(tmp_path).ask(command("2012", ""))
    assert replies == [Reply("9013", "", "20260315102030001")]


def test_2081_is_sent_once_after_the_first_connect_since_the_start(tmp_path):
    responder = Station(tmp_path).responder
    assert responder.on_connected(NOW) == [
        Reply("2081", "DataTime=20260315102030;RestartTime=20260315090000")]
    assert responder.on_connected(NOW) == []  # a reconnect is not a restart
    # the public 2081 has the same region shape
    assert parse(public(14)).packet.cp.split(";")[1].startswith("RestartTime=")


def test_a_wrong_password_gets_qnrtn_3_and_nothing_is_done(tmp_path):
    station = Station(tmp_path, allow_set_clock=True)
    replies = station.ask(command("1012", "SystemTime=20260101000000", pw="000000"))
    assert replies == [Reply("9011", "QnRtn=3", "20260315102030001")]
    assert station.clock_set == []
