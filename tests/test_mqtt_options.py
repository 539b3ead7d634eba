"""Broker options a real platform uses: MQTT 5, username/password, TLS with a client
certificate. Each against a real Mosquitto configured for it."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from support.collector import Collector
from support.station import accepted_seqs, write_station
from support.waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.config.loader import load_config
from edge_agent.tools.sim.broker import Mosquitto, free_port, port_open
from edge_agent.tools.sim.simserver import SimServer, SimUnit


@pytest.fixture
def device():
    server = SimServer([SimUnit(1, holding={0: 42})]).start()
    yield server
    server.stop()


def station(tmp_path: Path, port: int, server: SimServer, mqtt: dict):
    path = write_station(
        tmp_path / "station.yaml", broker_port=port, mqtt=mqtt,
        links={"gw": {"type": "tcp", "host": "127.0.0.1", "port": server.tcp_port}},
        devices=[{"id": "d1", "link": "gw", "unit_id": 1, "interval_s": 0.1,
                  "channels": [{"name": "v", "address": 0}]}])
    return load_config(path)


def run_until_delivered(config, collector: Collector, count: int = 10) -> None:
    agent = Agent(config)
    agent.start()
    try:
        collector.wait_for(lambda c: len(c.seqs("d1")) >= count, 30, f"{count} samples")
        agent.stop_polling()
        wait_until(lambda: agent.outbox.stats().rows == 0, 30, "the outbox to drain")
    finally:
        agent.stop()
    last = accepted_seqs(config.store.path)["d1"]
    collector.wait_for(lambda c: c.has_seqs("d1", last), 30, "every accepted sample")


def test_mqtt5_session_delivers_and_removes_on_puback(tmp_path, broker, collector, device):
    run_until_delivered(station(tmp_path, broker.port, device, {"protocol": "5"}), collector)


@pytest.mark.real_parts
def test_password_from_file_is_accepted_and_a_wrong_one_keeps_data_buffered(
        tmp_path, device, caplog):
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "station-7", "s3cret!"],
                   check=True, capture_output=True)
    passwd.chmod(0o644)
    server = Mosquitto(tmp_path / "broker", persistence=True,
                       listener_options=f"password_file {passwd}").start()
    collector = Collector(server.port).start()  # anonymous subscribers stay allowed
    try:
        (tmp_path / "wrong.pass").write_text("nope\n")
        wrong = station(tmp_path, server.port, device,
                        {"username": "station-7", "password_file": "wrong.pass"})
        caplog.set_level(logging.WARNING, logger="edge_agent")
        agent = Agent(wrong)
        agent.start()
        try:
            wait_until(lambda: agent.forwarder.stats.connect_failures >= 2, 30,
                       "refused connection attempts")
            assert agent.outbox.stats().samples > 0
            assert agent.forwarder.stats.acknowledged == 0
        finally:
            agent.stop()
        refused = [r.getMessage() for r in caplog.records if "broker unavailable" in
                   r.getMessage()]
        assert len(refused) == 1, "a refused login is logged once, not on every retry"
        assert "user name or password" in refused[0].lower() or "not authori" in \
            refused[0].lower()
        assert "s3cret" not in caplog.text and "nope" not in caplog.text

        (tmp_path / "right.pass").write_text("s3cret!\n")
        right = station(tmp_path, server.port, device,
                        {"username": "station-7", "password_file": "right.pass"})
        run_until_delivered(right, collector)
    finally:
        collector.stop()
        server.stop()


def make_pki(folder: Path) -> dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    folder.mkdir()
    files = {name: folder / name for name in
             ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem", "client.key",
              "client.csr", "client.pem", "san.cnf")}

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    files["san.cnf"].write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=edge-agent test CA", "-keyout", str(files["ca.key"]),
            "-out", str(files["ca.pem"]))
    for who, cn in (("server", "127.0.0.1"), ("client", "station-7")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                "-keyout", str(files[f"{who}.key"]), "-out", str(files[f"{who}.csr"]))
        extra = ["-extfile", str(files["san.cnf"])] if who == "server" else []
        openssl("x509", "-req", "-in", str(files[f"{who}.csr"]), "-CA", str(files["ca.pem"]),
                "-CAkey", str(files["ca.key"]), "-CAcreateserial", "-days", "2",
                "-out", str(files[f"{who}.pem"]), *extra)
    for path in files.values():
        path.chmod(0o644)
    return files


@pytest.mark.real_parts
def test_tls_with_ca_and_client_certificate(tmp_path, device):
    pki = make_pki(tmp_path / "pki")
    tls_port = free_port()
    server = Mosquitto(
        tmp_path / "broker", persistence=True,
        listener_options=(f"listener {tls_port} 127.0.0.1\ncafile {pki['ca.pem']}\n"
                          f"certfile {pki['server.pem']}\nkeyfile {pki['server.key']}\n"
                          "require_certificate true\n")).start()
    wait_until(lambda: port_open(tls_port), 10, "the TLS listener")
    collector = Collector(server.port).start()  # the plain listener, for the test's eyes
    try:
        config = station(tmp_path, tls_port, device, {"tls": {
            "ca_file": str(pki["ca.pem"]), "cert_file": str(pki["client.pem"]),
            "key_file": str(pki["client.key"])}})
        run_until_delivered(config, collector)
    finally:
        collector.stop()
        server.stop()

