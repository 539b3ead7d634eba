"""The packets the platform sends: answers (9014, 9013) and commands typed by the user.

A command is written ``CN=nnnn`` optionally followed by ``;`` and the CP region as sent
(``CN=2051;BeginTime=20260101000000,EndTime=20260101010000``). When the region is left
out, what the command needs is filled in: 1012 gets ``SystemTime`` (now), history pulls
2051/2061/2031 get the last hour / day / week up to now. Commands go out with the
station's own ST, PW, MN and version, and ask for an answer (Flag ack bit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from edge_agent.hj212.cp import format_time
from edge_agent.hj212.packet import Flag, Packet, Version, qn_for

NAMES = {
    "1000": "set timeout/retries", "1001": "DAU hardware id", "1002": "set MN",
    "1011": "get time", "1012": "set time", "1013": "time calibration request",
    "1014": "SM4 key", "1061": "get real-time interval", "1062": "set real-time interval",
    "1063": "get minute interval", "1064": "set minute interval", "1072": "set password",
    "2011": "real-time data", "2012": "stop real-time data", "2013": "raw monitoring data",
    "2021": "running state", "2022": "stop running state", "2031": "daily data",
    "2041": "daily running time", "2051": "minute data", "2061": "hourly data",
    "2062": "standard-check data", "2081": "DAU restart", "3020": "field-machine info",
    "9011": "request answer", "9012": "execution result", "9013": "notice answer",
    "9014": "data answer", "9015": "heartbeat",
}
NOTICES = frozenset({"1001", "1013", "9015"})  # answered with 9013
ANSWERS = frozenset({"9011", "9012", "9013", "9014"})  # never answered
_PULL_SPAN = {"2051": timedelta(hours=1), "2061": timedelta(days=1), "2031": timedelta(days=7)}


class CommandError(ValueError):
    """A command line the user typed that is not ``CN=nnnn[;region]``."""


@dataclass(frozen=True)
class Station:
    """What the platform learnt from a station's packets: who it is and how it speaks."""

    st: str
    pw: str
    mn: str
    version: Version


@dataclass(frozen=True)
class Command:
    """A typed command: its CN and region (None: fill in the usual one)."""

    cn: str
    region: str | None


def parse_command(text: str) -> Command:
    """``CN=1011`` or ``CN=2051;BeginTime=…,EndTime=…``."""
    head, sep, region = text.strip().partition(";")
    name, _, cn = head.partition("=")
    if name != "CN" or not (cn.isdigit() and len(cn) == 4):
        raise CommandError(f"{text!r}: expected CN=nnnn, then optionally ;region "
                           "(e.g. CN=2051;BeginTime=20260101000000,EndTime=20260101010000)")
    if "&&" in region:
        raise CommandError(f"{text!r}: the region must not contain &&")
    return Command(cn, region if sep else None)


def command_packet(command: Command, station: Station, now: datetime) -> Packet:
    """The packet that sends ``command`` to ``station``."""
    region = command.region
    if region is None:
        region = ""
        if command.cn == "1012":
            region = f"SystemTime={format_time(now)}"
        elif command.cn in _PULL_SPAN:
            end = now.replace(second=0, microsecond=0)
            region = (f"BeginTime={format_time(end - _PULL_SPAN[command.cn])},"
                      f"EndTime={format_time(end)}")
    return Packet(st=station.st, cn=command.cn, pw=station.pw, mn=station.mn, cp=region,
                  qn=qn_for(now), flag=Flag(station.version, ack=True))


def answer_packet(cn: str, qn: str, station: Station) -> Packet:
    """9014 (data answer) or 9013 (notice answer) echoing ``qn``, ST=91, no ack asked."""
    return Packet(st="91", cn=cn, pw=station.pw, mn=station.mn, cp="", qn=qn,
                  flag=Flag(station.version))
