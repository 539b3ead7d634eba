"""A private three-node RabbitMQ cluster with the MQTT plugin, on free loopback ports.

Debian's ``rabbitmq-server`` package (scripts/bootstrap installs it), run as the current
user from /usr/lib/rabbitmq/bin: the package's system service is neither used nor
disturbed. Every node has its own directory, config file, AMQP port, Erlang distribution
port and MQTT port; the cluster has its own Erlang cookie (a private ``HOME``) and its
own epmd on a free port, so two clusters (or a system RabbitMQ) on one machine never see
each other. Everything listens on 127.0.0.1 only.

A persistent MQTT session's queue (clean_session false, QoS 1) is a quorum queue
(``mqtt.durable_queue_type``), replicated on the three nodes, so a subscriber loses
nothing when one node stops.

Start-up: the nodes boot in parallel, then the second and third join the first with
``rabbitmqctl join_cluster`` (about 25 s on a busy two-core machine). ``stop()`` stops
every node and the private epmd, and checks that no process of the cluster is left. If
the test process itself is killed (a CI timeout), a small reaper process it started
kills the cluster's processes (found by their ``ERL_EPMD_PORT``) once it is gone.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.tools.sim.broker import free_port, port_open

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
INSTALL_HINT = ("RabbitMQ is not installed: run scripts/bootstrap (it installs Debian's "
                "rabbitmq-server) or sudo apt-get install -y rabbitmq-server")


def rabbitmq_installed() -> bool:
    return (RABBIT_BIN / "rabbitmq-server").exists() and shutil.which("erl") is not None


@dataclass
class RabbitNode:
    """One node: its name, ports and the server process while it runs."""

    name: str  # e.g. n1@localhost
    workdir: Path
    amqp_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.mqtt_port}"


class RabbitCluster:
    """Three (or ``size``) RabbitMQ nodes clustered on this host."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        if not rabbitmq_installed():
            raise RuntimeError(INSTALL_HINT)
        self.workdir = Path(workdir)
        self.home = self.workdir / "home"  # holds the cluster's own Erlang cookie
        self.epmd_port = free_port()
        self.nodes = [RabbitNode(f"edgetest{i}@localhost", self.workdir / f"node{i}")
                      for i in range(1, size + 1)]
        self.started_in_s: float | None = None
        self._reaper: subprocess.Popen[bytes] | None = None

    # -- environment ------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("RABBITMQ_", "ERL_"))}
        env.update(HOME=str(self.home), ERL_EPMD_PORT=str(self.epmd_port),
                   ERL_EPMD_ADDRESS="127.0.0.1", RABBITMQ_USE_LONGNAME="false")
        return env

    def _node_env(self, node: RabbitNode) -> dict[str, str]:
        env = self._base_env()
        env.update(
            RABBITMQ_NODENAME=node.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(node.amqp_port),
            RABBITMQ_DIST_PORT=str(node.dist_port),
            RABBITMQ_CONFIG_FILE=str(node.workdir / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(node.workdir / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(node.workdir / "mnesia"),
            RABBITMQ_LOG_BASE=str(node.workdir / "log"),
            RABBITMQ_PID_FILE=str(node.workdir / "rabbit.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=(
                "-kernel inet_dist_use_interface {127,0,0,1} "
                # two cores shared with other jobs: fewer schedulers start faster
                "+S 2:2 +sbwt none +sbwtdcpu none +sbwtdio none"),
            RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def _write_node_files(self, node: RabbitNode) -> None:
        node.workdir.mkdir(parents=True, exist_ok=True)
        (node.workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (node.workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{node.amqp_port}\n"
            f"mqtt.listeners.tcp.1 = 127.0.0.1:{node.mqtt_port}\n"
            "mqtt.allow_anonymous = true\n"
            # a persistent subscriber's queue replicated on every node (Raft), so it
            # outlives the loss of one node; a classic queue lives on one node only
            "mqtt.durable_queue_type = quorum\n"
            "loopback_users = none\n"
            "log.console = false\n"
            "log.file.level = warning\n")

    # -- control ------------------------------------------------------------------------

    def ctl(self, node: RabbitNode, *args: str, timeout_s: float = 120) -> str:
        """``rabbitmqctl -n NODE ARGS``; raises with its output if it fails."""
        result = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", node.name, *args],
            env=self._node_env(node), capture_output=True, text=True, timeout=timeout_s)
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {node.name} {' '.join(args)} failed "
                               f"({result.returncode}): {result.stdout[-1500:]}"
                               f"{result.stderr[-1500:]}")
        return result.stdout

    def start(self) -> RabbitCluster:
        """Boot every node and form the cluster; every node's MQTT port is open on return."""
        began = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        self._reaper = subprocess.Popen(
            [sys.executable, __file__, "--reap", str(os.getpid()), str(self.epmd_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            for node in self.nodes:
                self._write_node_files(node)
                self._spawn(node)
            first, *others = self.nodes
            for node in self.nodes:
                self._wait_port(node, node.amqp_port, "AMQP")
            for node in others:
                self.ctl(node, "stop_app")
                self.ctl(node, "join_cluster", first.name)
                self.ctl(node, "start_app")
            for node in self.nodes:
                self.wait_mqtt(node)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - began
        return self

    def _spawn(self, node: RabbitNode) -> None:
        log_file = open(node.workdir / "server.out", "ab")  # noqa: SIM115 - the child owns it
        node.process = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")], env=self._node_env(node),
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=node.workdir)
        log_file.close()

    def wait_mqtt(self, node: RabbitNode) -> None:
        """Until the node's MQTT listener accepts connections (the plugin has started)."""
        self._wait_port(node, node.mqtt_port, "MQTT")

    def _wait_port(self, node: RabbitNode, port: int, what: str,
                   timeout_s: float = 180) -> None:
        """A listener opens once the node has booted that far; the server script gives no
        other sign (``rabbitmqctl`` fails while the node is not yet registered)."""
        deadline = time.monotonic() + timeout_s
        while not port_open(port):
            if node.process is None or node.process.poll() is not None:
                raise RuntimeError(f"RabbitMQ node {node.name} exited: {self.log(node)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ node {node.name} opened no {what} port in "
                                   f"{timeout_s:.0f} s: {self.log(node)}")
            time.sleep(0.1)

    def stop_node(self, node: RabbitNode) -> None:
        """Stop one node completely (its Erlang VM ends); the others keep the cluster."""
        self.ctl(node, "stop")
        if node.process is not None:
            node.process.wait(timeout=60)
            node.process = None

    def kill_node(self, node: RabbitNode) -> None:
        """SIGKILL the node's whole process group (a crash: no clean close of anything).
        Nothing acknowledged is lost by it: the MQTT plugin sends PUBACK only once the
        queues the message was routed to have confirmed it."""
        if node.process is not None:
            _end_group(node.process, wait_s=0)
            node.process = None

    def start_node(self, node: RabbitNode) -> None:
        """Boot a stopped node again; it rejoins the cluster it belonged to."""
        self._spawn(node)
        self.wait_mqtt(node)

    def running_nodes(self, asking: RabbitNode) -> list[str]:
        out = self.ctl(asking, "eval", "rabbit_nodes:all_running().")
        return sorted(part.strip(" []'\n") for part in out.split(",") if "@" in part)

    def log(self, node: RabbitNode) -> str:
        texts = []
        for path in [node.workdir / "server.out", *sorted((node.workdir / "log").glob("*.log"))]:
            if path.exists():
                texts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(texts)

    def stop(self) -> None:
        """Stop every node and the cluster's epmd; SIGKILL what does not end in time."""
        for node in self.nodes:
            if node.process is None:
                continue
            if node.process.poll() is None:
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self.ctl(node, "stop", timeout_s=60)
            _end_group(node.process)
            node.process = None
        subprocess.run(["epmd", "-port", str(self.epmd_port), "-kill"],
                       env=self._base_env(), capture_output=True, timeout=30, check=False)
        leftovers = self.leftover_processes()
        for pid in leftovers:
            _kill(pid)
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait()
            self._reaper = None

    def leftover_processes(self) -> list[int]:
        """Processes of this cluster still running: beam.smp of its nodes, its epmd."""
        marks = [f"-port {self.epmd_port}", *(f" {node.name} " for node in self.nodes),
                 *(str(node.workdir) for node in self.nodes)]
        return cluster_processes(self.epmd_port, marks)

    def __enter__(self) -> RabbitCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _end_group(process: subprocess.Popen[bytes], wait_s: float = 30) -> None:
    """The server script's whole process group (the script, beam.smp, its helpers),
    SIGKILLed if it has not ended within ``wait_s``."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=wait_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def cluster_processes(epmd_port: int, marks: list[str] | None = None) -> list[int]:
    """Processes started for the cluster whose epmd listens on ``epmd_port``: each has
    ``ERL_EPMD_PORT`` in its environment (or one of ``marks`` in its command line)."""
    tag = f"ERL_EPMD_PORT={epmd_port}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
            env = (proc / "environ").read_bytes()
        except OSError:
            continue
        if tag in env.split(b"\0") or any(mark in f" {cmdline} " for mark in marks or ()):
            found.append(int(proc.name))
    return found


def _reap(parent_pid: int, epmd_port: int) -> None:
    """Wait for the test process to end, then kill what its cluster left running."""
    while True:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)  # a watchdog's poll, not a test's synchronisation
    for pid in cluster_processes(epmd_port):
        _kill(pid)


if __name__ == "__main__" and sys.argv[1:2] == ["--reap"]:
    _reap(int(sys.argv[2]), int(sys.argv[3]))
