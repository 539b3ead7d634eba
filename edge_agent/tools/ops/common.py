"""What ``status`` and ``export`` share: reading the station file for where things are,
and asking the running agent for its ``/status``.

The station file is validated as for ``run``, with two differences. A secret's variable
that this shell does not have (a broker password, an HJ 212 platform's PW or SM4 key) is
not an error: these commands never talk to the broker or a platform, and a technician's
shell rarely has the service's ``EnvironmentFile`` loaded.
``store.path`` is not checked as a place the agent can keep its outbox: these commands
only read it, often as another user than the service's.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from edge_agent.config.errors import ConfigError
from edge_agent.config.loader import load_config
from edge_agent.config.schema import HealthConfig, StandInSecret, StationConfig
from edge_agent.i18n import _, ngettext

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2  # 2: as `check`, or a wrong command line
DEFAULT_CONFIG = Path("/etc/edge-agent/station.yaml")
_SYSTEMD_DIRS = ("STATE_DIRECTORY", "CONFIGURATION_DIRECTORY")
_ASK_TIMEOUT_S = 5.0


class AgentUnreachable(Exception):
    """No running agent answered at the configured health endpoint (the message says why)."""


class _SecretsNotNeeded(Mapping[str, str]):
    """``os.environ``, plus a stand-in value for any variable it lacks (a secret's):
    the loader then checks everything else as usual. systemd's directory
    variables stay as they are, since they decide where the outbox is."""

    def __getitem__(self, key: str) -> str:
        if key in os.environ or key in _SYSTEMD_DIRS:
            return os.environ[key]
        return StandInSecret("(not needed by status or export)")

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


def load_station(path: Path) -> StationConfig | None:
    """The validated station file, or None after printing every problem."""
    try:
        return load_config(path, env=_SecretsNotNeeded(), for_agent=False)
    except ConfigError as err:
        count = len(err.issues)
        print(str(err), file=sys.stderr)
        print(ngettext("{path}: {count} problem found", "{path}: {count} problems found",
                       count).format(path=path, count=count), file=sys.stderr)
        return None


def endpoint_url(health: HealthConfig, route: str = "/status") -> str:
    """Where this machine reaches the agent's endpoint (an any-address bind is asked on
    loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(health.host, health.host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{health.port}{route}"


def ask_agent(health: HealthConfig) -> dict:
    """The running agent's ``/status`` document; AgentUnreachable when none answers."""
    if not health.enabled:
        raise AgentUnreachable(_("the health endpoint is disabled in the station file "
                                 "(health.enabled: false)"))
    if health.port == 0:
        raise AgentUnreachable(_("health.port is 0 (any free port), so the running agent's "
                                 "endpoint cannot be found"))
    url = endpoint_url(health)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    request = urllib.request.Request(url)
    if health.token is not None:  # the endpoint's token (access.py), never printed
        request.add_header("Authorization", f"Bearer {health.token.value}")
    try:
        with opener.open(request, timeout=_ASK_TIMEOUT_S) as answer:
            document = json.loads(answer.read())
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise AgentUnreachable((
                _("the agent at {url} wants its token (health.token_env / token_file) and "
                  "refused the one given; run status as root, or with the token's variable "
                  "from the secrets file set") if health.token else
                _("the agent at {url} wants its token (health.token_env / token_file) and "
                  "none is set; run status as root, or with the token's variable from the "
                  "secrets file set")).format(url=url)) from err
        raise AgentUnreachable(_("no usable answer from {url} (HTTP {code})").format(
            url=url, code=err.code)) from err
    except urllib.error.URLError as err:
        raise AgentUnreachable(_("nothing answers at {url} ({reason})").format(
            url=url, reason=err.reason)) from err
    except (OSError, ValueError) as err:  # timeouts, resets, not JSON
        raise AgentUnreachable(_("no usable answer from {url} ({error})").format(
            url=url, error=err)) from err
    if not isinstance(document, dict) or document.get("source") != "agent" \
            or document.get("v") != 1:
        raise AgentUnreachable(_("what answers at {url} is not an edge-agent of this "
                                 "version").format(url=url))
    return document
