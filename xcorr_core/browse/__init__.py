"""``xcorr browse``: a static web site over a job's results (table, detail views, summaries).

`build_site` writes it from a job folder; `make_server` serves it on loopback. The page itself
(``static/``) is plain HTML, CSS and JavaScript shipped in this package: no CDN, no network.
"""
from .serve import make_server
from .site import SITE_MARKER, SiteReport, build_site, read_chunk

__all__ = ["build_site", "SiteReport", "read_chunk", "make_server", "SITE_MARKER"]
