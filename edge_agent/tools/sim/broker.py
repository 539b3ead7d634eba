"""A private Mosquitto broker on a free loopback port, for the demo and the tests.

Uses the ``mosquitto`` binary from the system (Debian: ``apt-get install mosquitto``).
The broker runs as the current user, without persistence, listening on 127.0.0.1 only.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

INSTALL_HINT = (
    "Mosquitto is not installed. On Debian/Ubuntu run: sudo apt-get install -y mosquitto "
    "(the demo and the tests start their own private broker; the system service is not used)"
)


class BrokerNotFound(RuntimeError):
    """No mosquitto binary on this machine."""


def find_mosquitto() -> str:
    """Path of the mosquitto binary: ``$EDGE_AGENT_MOSQUITTO`` if set, else PATH, else
    /usr/sbin (Debian's place, which a normal user's PATH may lack)."""
    override = os.environ.get("EDGE_AGENT_MOSQUITTO")
    if override:
        if not os.access(override, os.X_OK):
            raise BrokerNotFound(f"EDGE_AGENT_MOSQUITTO={override} is not an executable. "
                                 + INSTALL_HINT)
        return override
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if not found:
        raise BrokerNotFound(INSTALL_HINT)
    return found


def free_port() -> int:
    """A port the kernel just gave out on 127.0.0.1 (free at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Mosquitto:
    """One broker process; ``start`` again after ``stop`` reuses the same port."""

    def __init__(self, workdir: Path, port: int | None = None, persistence: bool = False,
                 listener_options: str = "", allow_anonymous: bool = True) -> None:
        """``listener_options``: extra mosquitto.conf lines (TLS files, password_file)."""
        self.persistence = persistence
        self.listener_options = listener_options
        self.allow_anonymous = allow_anonymous
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.binary = find_mosquitto()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "mosquitto.log"

    def _write_config(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"{self.listener_options}\n"
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}\n"
            + (f"persistence true\npersistence_location {self.workdir}/\n"
               "autosave_interval 1\n" if self.persistence else "persistence false\n")
            +
            f"user {getpass.getuser()}\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\n"
        )
        return conf

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        conf = self._write_config()
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log_file.close()
        deadline = time.monotonic() + timeout_s
        while not port_open(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not listen on port {self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing connections cleanly."""
        if self.process is not None:
            os.kill(self.process.pid, 9)
            self.process.wait()
            self.process = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
