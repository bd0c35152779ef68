"""``xcorr browse --serve PORT``: the site over HTTP on 127.0.0.1 with the standard library's server
(for sites too large to open comfortably from the file system). Depends on nothing but the stdlib."""
from __future__ import annotations

import functools
import http.server
from pathlib import Path

__all__ = ["make_server"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


def make_server(site: str | Path, port: int = 8000, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """A threading HTTP server for the folder ``site`` (``port=0`` picks a free port; see
    ``server.server_address``). Call ``serve_forever()``; it binds to loopback only."""
    handler = functools.partial(_QuietHandler, directory=str(Path(site)))
    return http.server.ThreadingHTTPServer((host, port), handler)
