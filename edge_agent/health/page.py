"""The technician's page: static files shipped in the package, served as they are.

Why static: a station PC often has no internet, and nothing may need a build step there.
``page/index.html`` loads ``texts.js`` (every word the technician reads, keyed by message
id: the one place a translation goes), ``app.js`` (vanilla JS: fetches ``/status`` every
few seconds and draws it; the per-device page is the ``#device/<id>`` hash route, so the
server has no route per device) and ``style.css``. The page is read-only: the endpoint
serves GET only. Everything a device sends (channel names, text values, reasons) is put
into the page as text nodes, never as HTML; the Content-Security-Policy below also
refuses inline scripts, so text that slipped through could still not run.

The files are read once, on first use, from the installed package (importlib.resources:
the wheel, the .deb and the offline bundle carry them as package data). importlib.resources
is imported on that first use too: an agent whose page nobody opens keeps it out of
memory (issue 11, RSS; docs/performance.md, Memory).
"""

from __future__ import annotations

import functools
from http import HTTPStatus

from edge_agent.health.connection import Answer

#: route -> (file in page/, content type)
FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/page/texts.js": ("texts.js", "text/javascript; charset=utf-8"),
    "/page/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/page/style.css": ("style.css", "text/css; charset=utf-8"),
}
ROUTES = tuple(FILES)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_HEADERS = (("Content-Security-Policy", CSP), ("Referrer-Policy", "no-referrer"))


def asset(route: str) -> Answer:
    """The file behind ``route`` (one of ROUTES)."""
    name, content_type = FILES[route]
    return HTTPStatus.OK, content_type, _read(name), _HEADERS


@functools.cache
def _read(name: str) -> bytes:
    from importlib import resources

    return (resources.files("edge_agent.health") / "page" / name).read_bytes()
