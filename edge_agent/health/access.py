"""Who may read the endpoint: anyone on this PC, and with the token beyond it.

Bound to loopback (127.0.0.1, the default) and with no token configured, every route is
open: only this PC can connect. Bound to any other address, every route but ``/healthz``
needs the token from ``health.token_env`` / ``health.token_file`` (the station file's
secrets mechanism; the token is never in the file). Configured on loopback too, a token
is asked for there as well. ``/healthz`` stays open: a liveness probe rarely carries
credentials, and it shows no reading, no address and no secret.

The token is accepted two ways, both compared in constant time (SHA-256 digests through
``hmac.compare_digest``, so neither the content nor the length leaks through timing):

* ``Authorization: Bearer TOKEN``: Prometheus (``authorization: {credentials: ...}`` or
  ``bearer_token_file``) and scripts;
* HTTP Basic with any user name and the token as password: what a browser asks for
  itself (the 401 carries ``WWW-Authenticate: Basic``), so the page needs no login form.

Bound beyond loopback without a token, those routes answer 403 and say what to set,
rather than serve readings to the whole network or stop the agent (acquisition must
never stop over a status page's setting).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from http import HTTPStatus

from edge_agent.config.schema import HealthConfig
from edge_agent.config.validate_health import SECRETS_FILE, is_loopback
from edge_agent.health.connection import Answer

OPEN_ROUTES = frozenset({"/healthz"})
_TEXT = "text/plain; charset=utf-8"
_CHALLENGE = (("WWW-Authenticate", 'Basic realm="edge-agent", charset="UTF-8"'),)


class Access:
    """Decides, per request, whether it may be answered (see the module docstring)."""

    def __init__(self, config: HealthConfig) -> None:
        token = config.token.value if config.token is not None else None
        self._digest = _digest(token) if token is not None else None
        self.open = token is None and is_loopback(config.host)

    @property
    def token_required(self) -> bool:
        return not self.open

    def refusal(self, route: str, authorization: str | None) -> Answer | None:
        """None when the request may be answered; else the 401 or 403 answer."""
        if self.open or route in OPEN_ROUTES:
            return None
        if self._digest is None:
            return (HTTPStatus.FORBIDDEN, _TEXT,
                    b"403 Forbidden: this endpoint listens beyond this PC and no token is "
                    b"set; set health.token_env (the variable in " + SECRETS_FILE.encode()
                    + b") or health.token_file in the station file, then restart\n")
        presented = presented_token(authorization)
        if presented is not None and hmac.compare_digest(_digest(presented), self._digest):
            return None
        return (HTTPStatus.UNAUTHORIZED, _TEXT,
                b"401 Unauthorized: give the token (HTTP Basic password, any user name, "
                b"or Authorization: Bearer)\n", _CHALLENGE)


def presented_token(authorization: str | None) -> str | None:
    """The token in an Authorization header value (Bearer, or Basic's password)."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon else None


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()
