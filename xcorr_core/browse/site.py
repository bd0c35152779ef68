"""`build_site`: a job's folder as a self-contained static web site (``xcorr browse``).

Layout of the site::

    index.html, browse.js, browse.css   the page (shipped in this package; no CDN, no network)
    data/meta.js                        methods, metrics, class names, grid, summaries, chunk count
    data/rows-00000.js ...              the table's columns, ``chunk_rows`` queries per file
    data/detail-00000.js ...            per query: each method's neighbours, pairs and weights, figures
    img/q/<query id>.jpg, img/g/<gallery id>.jpg   pictures of queries and of the neighbours shown
    fig/<method>-<query id>-<j>.png     explanation figures drawn from the job's explanation files

Data files are scripts (``xcorrBrowse.rows(i, {...});``), not JSON fetched by the page, because a
page opened from the file system may load scripts but not fetch files. `read_chunk` reads one back.
Depends on pyarrow (through jobs.table), the core's jobs, sources and stats modules, and this package.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from tqdm.auto import tqdm

from ..errors import ConfigError, InputError
from ..fileio import atomic_write, make_dir
from .media import image_getter, render_figures, save_picture
from .rows import detail_rows, job_methods, job_metrics, summaries, table_columns

__all__ = ["build_site", "SiteReport", "read_chunk", "SITE_MARKER"]

SITE_MARKER = ".xcorr-browse"
STATIC = Path(__file__).parent / "static"
_LIGHT = ("query_id", "label")


class SiteReport(BaseModel):
    """What `build_site` wrote."""

    site: str
    queries: int
    methods: list[str]
    metrics: list[str]
    chunks: int
    pictures: int
    figures: int
    problems: list[str]
    seconds: float

    @property
    def index(self) -> Path:
        return Path(self.site) / "index.html"


def _script(kind: str, i: int, payload: Any) -> str:
    return f"xcorrBrowse.{kind}({i}, {json.dumps(payload, allow_nan=False, separators=(',', ':'))});\n"


_CHUNK = re.compile(r"^xcorrBrowse\.(\w+)\((\d+), (.*)\);\s*$", re.S)


def read_chunk(path: str | Path) -> tuple[str, int, Any]:
    """One data file of a site as (kind, chunk number, payload)."""
    m = _CHUNK.match(Path(path).read_text())
    if m is None:
        raise InputError(f"{path} is not a browser data file")
    return m.group(1), int(m.group(2)), json.loads(m.group(3))


def _prepare(site: Path) -> None:
    """An empty folder or an earlier site (whose generated parts are removed); anything else is refused."""
    if site.exists() and any(site.iterdir()) and not (site / SITE_MARKER).is_file():
        raise ConfigError(f"{site} is not empty and holds no xcorr browser site: choose another --site")
    for sub in ("data", "img", "fig"):
        shutil.rmtree(site / sub, ignore_errors=True)
    make_dir(site / "data")
    (site / SITE_MARKER).write_text("written by xcorr browse\n")


def _gallery(job: Path, manifest: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from ..jobs.gallery_files import open_gallery

    folder = manifest.get("spec", {}).get("gallery_dir") or job / "gallery"
    index, _, info = open_gallery(Path(folder), need_store=False)
    return index.labels.cpu().numpy(), info


def _source(spec: dict[str, Any], key: str, given: Any, problems: list[str]) -> Any:
    if given is not None:
        return given
    if not spec.get(key):
        problems.append(f"the job names no {key} source: no pictures of its images")
        return None
    from ..sources import load_source

    try:
        return load_source(spec[key])
    except Exception as exc:  # noqa: BLE001 - a moved data set costs the pictures, not the site
        problems.append(f"could not load the {key} source {spec[key]!r} ({type(exc).__name__}: {exc}): no pictures of its images")
        return None


def build_site(job: str | Path, site: str | Path | None = None, *, chunk_rows: int = 2000, pictures: bool = True,
               max_figures: int = 200, query_data: Any = None, gallery_data: Any = None, title: str | None = None,
               progress: bool | None = None) -> SiteReport:
    """Write the browser site of the job folder ``job`` into ``site`` (default ``job/site``).

    Args:
        chunk_rows: queries per data file; the page shows the first file's rows while it loads the rest.
        pictures: write pictures of the queries and of their neighbours (from the job's data sources,
            or ``query_data`` / ``gallery_data`` when given).
        max_figures: draw explanation figures (other than nearest neighbours, which the page draws
            itself) for at most this many queries, in query order.
        title: the page's title (default: the job folder's name).
    """
    from ..jobs.table import read_manifest, read_results

    t0 = time.perf_counter()
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be >= 1, got {chunk_rows}")
    job = Path(job)
    site = Path(site) if site is not None else job / "site"
    manifest = read_manifest(job)
    table = read_results(job)
    names = table.schema.names
    methods = job_methods(names)
    metrics = job_metrics(names, methods)
    glabels, ginfo = _gallery(job, manifest)
    _prepare(site)
    problems: list[str] = []
    spec = manifest.get("spec", {})
    qdata = _source(spec, "data", query_data, problems) if pictures else None
    gdata = _source(spec, "gallery", gallery_data, problems) if pictures else None
    class_names = list(getattr(qdata, "class_names", None) or getattr(gdata, "class_names", None) or [])
    n = table.num_rows
    chunks = (n + chunk_rows - 1) // chunk_rows
    qimg = image_getter(qdata) if qdata is not None else None
    gimg = image_getter(gdata) if gdata is not None else None
    written_g: set[int] = set()
    n_pictures = n_figures = figured = 0
    bar = tqdm(total=n, desc="site", unit="query", disable=(None if progress is None else not progress))
    for c in range(chunks):
        cols = table.slice(c * chunk_rows, chunk_rows).to_pydict()
        figures: dict[int, dict[str, list[str]]] = {}
        expl = {m: cols[f"{m}_explanations"] for m in methods if f"{m}_explanations" in cols}
        for r, qid in enumerate(cols["query_id"]):
            if qimg is not None:
                save_picture(qimg(qid), site / "img" / "q" / f"{qid}.jpg")
                n_pictures += 1
            if gimg is not None:
                for m in methods:
                    for g in cols[f"{m}_ids"][r] or []:
                        if g not in written_g:
                            save_picture(gimg(g), site / "img" / "g" / f"{g}.jpg")
                            written_g.add(g)
                            n_pictures += 1
            if figured < max_figures and any(files[r] for files in expl.values()):
                figured += 1
                for m, files in expl.items():
                    rel = files[r]
                    if not rel:
                        continue
                    paths, probs = render_figures(job / rel, site, f"{m}-{qid}", query=qimg(qid) if qimg else None, gallery=gimg,
                                                  class_names=class_names or None, target=cols["label"][r])
                    figures.setdefault(qid, {})[m] = paths
                    n_figures += len(paths)
                    problems += [f"query {qid}, {m}: {p}" for p in probs]
            bar.update(1)
        (site / "data" / f"rows-{c:05d}.js").write_text(_script("rows", c, table_columns(cols, methods, metrics, glabels)))
        (site / "data" / f"detail-{c:05d}.js").write_text(_script("detail", c, detail_rows(cols, methods, glabels, figures)))
    bar.close()
    light = table.select([*_LIGHT, *(f"{m}_prediction" for m in methods), *(f"{m}__{x}" for m in methods for x in metrics if f"{m}__{x}" in names)])
    shape = ginfo.get("map_shape") or []
    meta = {
        "title": title or job.resolve().name, "job": str(job.resolve()), "queries": n, "chunks": chunks, "chunk_rows": chunk_rows,
        "methods": methods, "rerankers": [m for m in methods if m != "knn"], "metrics": metrics,
        "class_names": class_names, "num_classes": max([int(ginfo.get("num_classes") or 0), len(class_names)]),
        "grid": list(shape[-2:]) if len(shape) >= 2 else None, "pictures": {"query": qimg is not None, "gallery": gimg is not None},
        "data": spec.get("data"), "gallery": spec.get("gallery"), "summary": summaries(light.to_pydict(), methods, metrics),
        "problems": problems[:50], "built": time.strftime("%Y-%m-%d %H:%M"),
    }
    (site / "data" / "meta.js").write_text(f"window.XCORR_META = {json.dumps(meta, allow_nan=False, default=str)};\n")
    for f in ("browse.js", "browse.css"):
        shutil.copyfile(STATIC / f, site / f)
    page = (STATIC / "index.html").read_text().replace("{{TITLE}}", _escape(meta["title"]))
    atomic_write(site / "index.html", lambda f: f.write(page.encode()))
    return SiteReport(site=str(site), queries=n, methods=methods, metrics=metrics, chunks=chunks, pictures=n_pictures, figures=n_figures,
                      problems=problems, seconds=round(time.perf_counter() - t0, 2))


def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)
