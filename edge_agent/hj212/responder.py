"""Answers to what a platform asks (HJ 212-2017 §6.5 and Appendix C; 2025 Appendix C).

A request (the platform sets or gets something, or pulls history) is answered 9011
``QnRtn=1`` (ready), then the data it asked for, then 9012 ``ExeRtn`` (1 success,
3 bad condition, 100 no data); a wrong password gets 9011 ``QnRtn=3`` and nothing else.
A notice (2012 stop real-time data, 2022 stop running state) gets 9013; the station's
regular uploads go on (it keeps no separate on-demand stream to stop), and the log says
so. Anything else
gets 9012 ``ExeRtn=2`` and the reason in the log: a platform should hear "no", not
silence. Answers echo the request's QN (13 digits too: the platform pairs by it); data
sent in a flow (history records, 1011's time) are built by the session.

Pure: the station's state comes in through injected parts, so every flow is tested
without a socket, a real clock or the outbox: ``store`` (platform_state.py) keeps what
the platform set, ``history(cn, begin, end)`` gives the CP regions of stored records,
``set_clock`` sets the PC's clock and is called only when the station file allows it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime

from edge_agent.hj212.cp import Region, format_time, parse_region
from edge_agent.hj212.packet import PacketError, ParsedPacket
from edge_agent.hj212.platform_state import PlatformStateFile
from edge_agent.hj212.reply import Reply
from edge_agent.hj212.session_types import SessionSettings

log = logging.getLogger(__name__)

READY, PW_ERROR = "1", "3"  # QnRtn, Table 7
SUCCESS, FAILED, BAD_CONDITION, NO_DATA = "1", "2", "3", "100"  # ExeRtn, Table 6
HISTORY = {"2051": "minute", "2061": "hourly", "2031": "daily"}
NOTICES = frozenset({"2012", "2022"})
OVERTIME = (1, 99)  # s, CN 1000 (HJ 212-2017 Table 4)
RECOUNT = (1, 99)
RTD_INTERVAL_S = (30, 3600)
MIN_INTERVALS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)

History = Callable[[str, datetime, datetime], Iterable[str]]
ClockSetter = Callable[[datetime], None]


@dataclass(frozen=True)
class Intervals:
    """The real-time interval (s; 0: every sample is sent) and minute-data interval (min)
    the station file sets."""

    rtd_interval_s: int = 30
    min_interval_min: int = 10


class _Refused(Exception):
    """A request that cannot be carried out: ``code`` is the ExeRtn, the message why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Responder:
    """The station's side of the platform's flows; see the module docstring."""

    def __init__(self, password: str, store: PlatformStateFile, history: History, *,
                 intervals: Intervals = Intervals(), allow_set_clock: bool = False,
                 set_clock: ClockSetter | None = None, started_at: datetime | None = None
                 ) -> None:
        self._password = password
        self._store = store
        self._history = history
        self._intervals = intervals
        self._allow_set_clock = allow_set_clock
        self._set_clock = set_clock
        self._started_at = started_at
        self._restart_told = False

    # -- what the session asks ------------------------------------------------------
    def adjust(self, settings: SessionSettings) -> SessionSettings:
        """``settings`` with the timeout, retries and password the platform set."""
        stored = self._store.get()
        return replace(settings,
                       timeout_s=settings.timeout_s if stored.timeout_s is None
                       else stored.timeout_s,
                       retries=settings.retries if stored.retries is None else stored.retries,
                       pw=self.password)

    @property
    def password(self) -> str:
        return self._store.get().password or self._password

    def intervals(self) -> Intervals:
        """The intervals in force: the station file's, or what the platform set."""
        stored = self._store.get()
        return Intervals(stored.rtd_interval_s or self._intervals.rtd_interval_s,
                         stored.min_interval_min or self._intervals.min_interval_min)

    def on_connected(self, now: datetime) -> list[Reply]:
        """2081 (restart time) after the first connect since the agent started."""
        if self._started_at is None or self._restart_told:
            return []
        self._restart_told = True
        return [Reply("2081", f"DataTime={format_time(now)};"
                              f"RestartTime={format_time(self._started_at)}")]

    def respond(self, parsed: ParsedPacket, now: datetime) -> Iterator[Reply]:
        """The replies to one platform packet, in order (lazily: a history pull reads its
        records only after 9011 is sent)."""
        packet = parsed.packet
        qn = packet.qn
        if qn is None:
            log.warning("HJ 212 CN=%s without QN: nothing to answer with (ignored)", packet.cn)
            return
        if packet.cn in NOTICES:
            log.info("HJ 212 platform notice CN=%s answered 9013; the regular uploads go "
                     "on (real-time data at its interval, statistics per period): this "
                     "station does not keep a separate on-demand stream to stop", packet.cn)
            yield Reply("9013", "", qn)
            return
        handler = self._handlers().get(packet.cn)
        if handler is None:
            log.warning("HJ 212 platform request CN=%s refused (9012 ExeRtn=2): this agent "
                        "does not support it", packet.cn)
            yield Reply("9012", f"ExeRtn={FAILED}", qn)
            return
        if packet.pw != self.password:
            log.warning("HJ 212 platform request CN=%s refused (9011 QnRtn=3): wrong password",
                        packet.cn)
            yield Reply("9011", f"QnRtn={PW_ERROR}", qn)
            return
        yield Reply("9011", f"QnRtn={READY}", qn)
        try:
            region = parse_region(packet.cp)
            yield from handler(packet.cn, region, qn, now)
        except (_Refused, PacketError) as err:
            code = err.code if isinstance(err, _Refused) else BAD_CONDITION
            log.warning("HJ 212 platform request CN=%s failed (9012 ExeRtn=%s): %s",
                        packet.cn, code, err)
            yield Reply("9012", f"ExeRtn={code}", qn)
            return
        yield Reply("9012", f"ExeRtn={SUCCESS}", qn)

    # -- the flows ------------------------------------------------------------------
    def _handlers(self) -> dict[str, Callable[[str, Region, str, datetime], Iterator[Reply]]]:
        return {"1000": self._set_timeout, "1011": self._get_time, "1012": self._set_time,
                "1061": self._get_rtd, "1062": self._set_rtd, "1063": self._get_min,
                "1064": self._set_min, "1072": self._set_password,
                **dict.fromkeys(HISTORY, self._history_pull)}

    def _set_timeout(self, cn: str, region: Region, qn: str, now: datetime) -> Iterator[Reply]:
        timeout_s = _whole(region, "OverTime", *OVERTIME)
        retries = _whole(region, "ReCount", *RECOUNT)
        self._save(timeout_s=timeout_s, retries=retries)
        log.info("HJ 212 platform set timeout %d s, retries %d", timeout_s, retries)
        yield from ()

    def _get_time(self, cn: str, region: Region, qn: str, now: datetime) -> Iterator[Reply]:
        yield Reply("1011", _with_polid(region, f"SystemTime={format_time(now)}"), qn)

    def _set_time(self, cn: str, region: Region, qn: str, now: datetime) -> Iterator[Reply]:
        wanted = region.time("SystemTime")
        if wanted is None:
            raise _Refused(BAD_CONDITION, "SystemTime missing")
        if not self._allow_set_clock or self._set_clock is None:
            raise _Refused(BAD_CONDITION, f"asked to set the clock to {wanted}; the station "
                           "file does not allow the platform to set it (allow_set_clock)")
        try:
            self._set_clock(wanted)
        except OSError as err:
            raise _Refused(FAILED, f"setting the clock to {wanted} failed: {err}") from err
        log.warning("HJ 212 platform set the PC clock to %s (it was %s)", wanted, now)
        yield from ()

    def _get_rtd(self, cn: str, region: Region, qn: str, now: datetime) -> Iterator[Reply]:
        yield Reply("1061", f"RtdInterval={self.intervals().rtd_interval_s}", qn)

    def _set_rtd(self, cn: str, region: Region, qn: str, now: datetime) -> Iterator[Reply]:
        value = _whole(region, "RtdInterval", *RTD_INTERVAL_S)
        self._save(rtd_interval_s=value)
        yield from ()

    def _get_min(self, cn: str, region: Region, qn: str, now: datetime) -> Iterator[Reply]:
        yield Reply("1063", f"MinInterval={self.intervals().min_interval_min}", qn)

    def _set_min(self, cn: str, region: Region, qn: str, now: datetime) -> Iterator[Reply]:
        value = _whole(region, "MinInterval", 1, 30)
        if value not in MIN_INTERVALS:
            raise _Refused(BAD_CONDITION, f"MinInterval={value}: expected one of "
                           + ", ".join(map(str, MIN_INTERVALS)))
        self._save(min_interval_min=value)
        yield from ()

    def _set_password(self, cn: str, region: Region, qn: str, now: datetime
                      ) -> Iterator[Reply]:
        new = region.get("NewPW")
        if not new or not new.isascii() or not new.isalnum() or len(new) > 6:
            raise _Refused(BAD_CONDITION, "NewPW: expected 1 to 6 letters or digits")
        self._save(password=new)
        log.warning("HJ 212 platform changed the access password (kept in %s)",
                    self._store.path)
        yield from ()

    def _history_pull(self, cn: str, region: Region, qn: str, now: datetime
                      ) -> Iterator[Reply]:
        begin, end = region.time("BeginTime"), region.time("EndTime")
        if begin is None or end is None or end < begin:
            raise _Refused(BAD_CONDITION, "expected BeginTime and EndTime, begin before end")
        count = 0
        for record in self._history(cn, begin, end):
            count += 1
            yield Reply(cn, record)
        log.info("HJ 212 platform pulled %s data %s..%s: %d records", HISTORY[cn], begin,
                 end, count)
        if count == 0:
            raise _Refused(NO_DATA, f"no {HISTORY[cn]} data from {begin} to {end}")

    def _save(self, **changes: int | str) -> None:
        try:
            self._store.update(**changes)
        except OSError as err:
            raise _Refused(FAILED, f"cannot keep the setting in {self._store.path}: {err}"
                           ) from err


def _whole(region: Region, name: str, lo: int, hi: int) -> int:
    text = region.get(name)
    if text is None or not text.isdigit() or not lo <= int(text) <= hi:
        raise _Refused(BAD_CONDITION, f"{name}={text}: expected a whole number {lo} to {hi}")
    return int(text)


def _with_polid(region: Region, text: str) -> str:
    """1011 may name a PolId (an instrument's time); the answer repeats it."""
    polid = region.get("PolId")
    return f"PolId={polid};{text}" if polid else text
