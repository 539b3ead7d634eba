"""Record a link's traffic as the agent itself sends and receives it (link setting
``record:``), for serial RTU buses and text protocols, where no proxy can be inserted.

The link's client (``drivers/modbus/protocol/pymodbus_client.py``,
``drivers/serialtext/protocol/client.py``) shows a ``LinkRecorder`` every byte it writes
and reads (``edge_agent.link.WireTap``). Recording must never slow down or break polling,
so the poller's thread only time-stamps the bytes and queues them; a thread of the
recorder's own cuts them into frames (``cutting.AnswerCutter``), pairs answers with
requests (``exchanges.Exchanges``) and writes one flushed line per record
(``files.CaptureWriter``).

When something goes wrong, polling goes on and the recording says so once:

* the file cannot be opened or written (a full disk, a missing folder, a card pulled):
  one ERROR, then nothing more is written for this run (a line half written to a full
  disk would make every later line unreadable);
* the disk is slower than the link (the queue holds ``QUEUE_LIMIT`` items): what does
  not fit is dropped, counted, logged once, and marked in the capture by a ``gap`` event.

* anything else goes wrong while writing (a bug): the same, with the traceback, once.

One path has one writer at a time. ``finish`` (the link's client closing: the poller
ends, for a stop or a reload) waits, up to ``FINISH_TIMEOUT_S``, until everything queued
is written and the file closed. A recorder for a path whose previous recorder is still
finishing waits for it before it opens the file (and continues it: continuing.py); a
path another live recorder writes to is refused with an error, and that link is not
recorded.

Bytes the client throws away without reading them are not recorded: after a timeout on a
serial line, a late answer is flushed from the port's buffer unseen.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.config.schema import Link, TcpLink
from edge_agent.tools.capture.continuing import NotThisCapture, Opened, open_capture
from edge_agent.tools.capture.cutting import AnswerCutter
from edge_agent.tools.capture.exchanges import Exchanges
from edge_agent.tools.capture.format import Event, Header, LinkInfo, Record
from edge_agent.tools.capture.mbap_stream import RawFrame

log = logging.getLogger(__name__)
QUEUE_LIMIT = 10_000  # byte chunks waiting for the writer; beyond: dropped and counted
FINISH_TIMEOUT_S = 5.0  # at a close or exit, how long the last records may take
_LIVE: weakref.WeakSet[LinkRecorder] = weakref.WeakSet()
_BY_PATH: dict[Path, LinkRecorder] = {}  # the recorder writing each path (resolved)
_BY_PATH_LOCK = threading.Lock()
Item = tuple[float, str, bytes]  # monotonic time, what (open/tx/rx/close), bytes


def link_info(link: Link) -> LinkInfo:
    """How the capture's header describes a station file's link."""
    protocol = link.protocol.value
    if isinstance(link, TcpLink):
        return LinkInfo(link.name, protocol, f"{link.host}:{link.port}")
    return LinkInfo(link.name, protocol, link.port, baudrate=link.baudrate,
                    bytesize=link.bytesize, parity=link.parity.value, stopbits=link.stopbits)


class LinkRecorder:
    """Records one link into one capture file, from a thread of its own."""

    def __init__(self, path: Path, link: LinkInfo, *, tcp: bool) -> None:
        self.path = path
        self._link = link
        self._tcp = tcp  # numbered connections; a serial port has none
        self._header = Header(datetime.now(UTC), "agent", (link,))
        self._base = -time.monotonic()  # + monotonic time = seconds since the header
        self._lock = threading.Condition()
        self._items: deque[Item] = deque()
        self._queued = self._written = self._dropped = 0
        self._finishing = False
        self.failure: str | None = None  # why nothing more is recorded
        self.frames_recorded = 0
        self._thread = threading.Thread(target=self._run, name=f"record-{link.name}",
                                        daemon=True)
        self._key = _key(path)
        self._previous: LinkRecorder | None = None  # finishing: waited for before opening
        self._taken_by: str | None = None  # the link whose live recorder has the path
        with _BY_PATH_LOCK:
            previous = _BY_PATH.get(self._key)
            if previous is not None and not previous.finishing:
                self._taken_by = previous._link.name
            else:
                self._previous, _BY_PATH[self._key] = previous, self
        _LIVE.add(self)
        self._thread.start()

    @property
    def finishing(self) -> bool:
        """``finish`` was called: no new traffic is taken."""
        return self._finishing

    @classmethod
    def for_link(cls, link: Link) -> LinkRecorder:
        assert link.record is not None
        return cls(link.record, link_info(link), tcp=isinstance(link, TcpLink))

    # -- the tap: called from the poller's thread, returns at once ---------------------

    def opened(self) -> None:
        self._put("open", b"")

    def sent(self, data: bytes) -> None:
        self._put("tx", bytes(data))

    def received(self, data: bytes) -> None:
        self._put("rx", bytes(data))

    def closed(self) -> None:
        self._put("close", b"")

    def finish(self, timeout_s: float = FINISH_TIMEOUT_S) -> bool:
        """No more traffic: write what is queued, close the file, end the thread; wait for
        that up to ``timeout_s``. False (and a warning) if the thread had not ended: the
        next recorder of the path waits for it too before it opens the file."""
        with self._lock:
            self._finishing = True
            self._lock.notify_all()
        if threading.current_thread() is self._thread or self._thread.ident is None:
            return not self._thread.is_alive()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("link %s: the last records of %s were not written within %g s; "
                        "they follow when the disk takes them", self._link.name, self.path,
                        timeout_s)
            return False
        return True

    def _put(self, what: str, data: bytes) -> None:
        item = (time.monotonic(), what, data)
        with self._lock:
            if self._finishing:
                return
            if len(self._items) >= QUEUE_LIMIT:
                self._dropped += 1
                if self._dropped == 1:  # once until the writer catches up again
                    log.warning("link %s: the capture %s is written slower than the link "
                                "talks; traffic is dropped from the recording (polling "
                                "goes on)", self._link.name, self.path)
                return
            self._items.append(item)
            self._queued += 1
            self._lock.notify_all()

    def flush(self, timeout_s: float = FINISH_TIMEOUT_S) -> bool:
        """Wait until everything queued so far is written (or given up); False if that
        took longer than ``timeout_s``. For tests, and for the end of the process."""
        with self._lock:
            target = self._queued
            return self._lock.wait_for(
                lambda: self._written >= target or not self._thread.is_alive(), timeout_s)

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            state = self._open() if self._after_previous() else None
        except Exception as err:  # a bug: record nothing, but keep the queue drained
            self._fail(f"cannot record into {self.path}: {_why(err)}", bug=True)
            state = None
        try:
            self._drain(state)
        finally:
            with _BY_PATH_LOCK:
                if _BY_PATH.get(self._key) is self:
                    del _BY_PATH[self._key]

    def _after_previous(self) -> bool:
        """Wait for the path's previous recorder to end; False: another link's live
        recorder writes this path, or the previous one does not end (then ours fails)."""
        previous, self._previous = self._previous, None
        if self._taken_by is not None:
            self._fail(f"cannot record into {self.path}: link {self._taken_by} records "
                       "into it already; give each link a file of its own")
            return False
        if previous is None:
            return True
        log.debug("link %s: waiting for the previous recording into %s to end",
                  self._link.name, self.path)
        previous._thread.join(FINISH_TIMEOUT_S)
        if previous._thread.is_alive():
            self._fail(f"cannot record into {self.path}: its previous recording is still "
                       f"being written after {FINISH_TIMEOUT_S:g} s")
            return False
        return True

    def _drain(self, state: _Writing | None) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._items or self._finishing)
                items, dropped = list(self._items), self._dropped
                self._items.clear()
                self._dropped = 0
                finishing = self._finishing
            if state is not None:
                state = self._write(state, items, dropped)
            with self._lock:
                self._written += len(items)
                self._lock.notify_all()
            if finishing:
                break
        if state is not None:
            state.close()

    def _open(self) -> _Writing | None:
        try:
            opened = open_capture(self.path, self._header)
        except (OSError, NotThisCapture) as err:
            self._fail(f"cannot record into {self.path}: {_why(err)}")
            return None
        log.info("recording link %s into %s", self._link.name, self.path)
        # Records count from the file's header: ours, or an older one being continued.
        ahead_s = (self._header.started - opened.writer.header.started).total_seconds()
        return _Writing(opened, self._link, self._tcp, self._base + ahead_s)

    def _write(self, state: _Writing, items: list[Item], dropped: int) -> _Writing | None:
        try:
            records: list[Record] = []
            for item in items:
                records += state.records(item)
            if dropped:
                records.append(state.gap(dropped))
            state.opened.writer.write(records)
        except Exception as err:  # OSError: the disk; anything else: a bug. Both end it.
            self._fail(f"cannot write {self.path} any more: {_why(err)}",
                       bug=not isinstance(err, OSError))
            state.close()
            return None
        self.frames_recorded += sum(1 for r in records if not isinstance(r, Event))
        return state

    def _fail(self, why: str, *, bug: bool = False) -> None:
        """Stop recording for this run, said once (with the traceback for a bug)."""
        self.failure = why
        log.error("link %s: %s; polling goes on without recording (%d frames recorded)",
                  self._link.name, why, self.frames_recorded, exc_info=bug)


class _Writing:
    """The writer thread's state: the open file, the framing of answers, the pairing."""

    def __init__(self, opened: Opened, link: LinkInfo, tcp: bool, base: float) -> None:
        self.opened = opened
        self._base = base  # + monotonic time = seconds since the file's header
        self._link = link.name
        self._protocol = link.protocol
        self._tcp = tcp
        self._conn = opened.next_conn - 1 if tcp else None
        self._cutter = AnswerCutter(link.protocol)
        self._exchanges = Exchanges({link.name: link.protocol}, opened.next_xid)

    def records(self, item: Item) -> list[Record]:
        monotonic_t, what, data = item
        t = round(max(0.0, monotonic_t + self._base), 6)
        if what == "tx":
            return [*self._answers(self._cutter.cut(t, "the master sent its next request")),
                    self._exchanges.frame(t, "tx", self._link, self._conn, data)]
        if what == "rx":
            return self._answers(self._cutter.feed(data, t))
        if what == "open":
            if self._tcp:
                self._conn = (self._conn or 0) + 1
            note = "connected" if self._tcp else "port opened"
            return [Event(t, "open", self._link, self._conn, note=note)]
        ended = self._answers(self._cutter.cut(t, "connection closed"))
        self._exchanges.close(self._link, self._conn)
        return [*ended, Event(t, "close", self._link, self._conn, note="closed by the agent")]

    def _answers(self, frames: list[RawFrame]) -> list[Record]:
        return [self._exchanges.frame(f.t, "rx", self._link, self._conn, f.data, f.problem)
                for f in frames]

    def gap(self, dropped: int) -> Event:
        t = round(max(0.0, time.monotonic() + self._base), 6)
        return Event(t, "gap", self._link, self._conn,
                     note=f"{dropped} chunks of traffic not recorded: the disk was slower "
                          "than the link")

    def close(self) -> None:
        try:
            self.opened.writer.close()
        except OSError:  # the last flush of a full disk
            log.debug("closing the capture failed", exc_info=True)


def _key(path: Path) -> Path:
    """The file ``path`` names, however it is spelt (relative, through links)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: then it is not opened either
        return path.absolute()


def _why(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err)


def flush_recordings(timeout_s: float = FINISH_TIMEOUT_S) -> bool:
    """Wait until every live recorder has written what it was given (tests use it after
    stopping an agent). False if one took longer than ``timeout_s``."""
    return all(recorder.flush(timeout_s) for recorder in list(_LIVE))


@atexit.register
def _finish_all() -> None:
    """At the end of the process, write what is queued: the writer threads are daemons."""
    for recorder in list(_LIVE):
        recorder.finish()
