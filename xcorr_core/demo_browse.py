"""The demo's browser section: the demo pipeline run as a job over the SynthBirds test split (the
same images and gallery as the classification section), and the browser site over its results
(``OUT/job`` and ``OUT/browse/index.html``), so a new user sees ``xcorr browse`` after ``make demo``.
Depends on the core's jobs, browse, spec and sources modules (pyarrow through the jobs).
"""
from __future__ import annotations

import html
from typing import Any

from .demo_report import DemoSection, demo_spec_path

__all__ = ["browse_section"]


def _source(ds: Any) -> dict[str, Any]:
    """The data source that regenerates a SynthBirds set (recorded in the job, read by the site)."""
    return {"kind": "synthbirds", "split": ds.split, "variant": ds.variant, "seed": ds.seed, "size": ds.size,
            "per_class": len(ds) // ds.num_classes}


def browse_section(ctx: Any) -> DemoSection:
    """Run the job (kNN and every installed re-ranker, explanations on) and build its site."""
    from .browse import build_site
    from .jobs import JobSpec, run_job
    from .spec import PipelineSpec

    try:
        import pyarrow  # noqa: F401 - jobs write Parquet
    except ImportError:
        return DemoSection(title="Browse the SynthBirds job", report={"skipped": "pyarrow is not installed"},
                           html="<p>Skipped: jobs and their browser need pyarrow (<code>pip install 'xcorr-core[ray]'</code>, "
                                "or just <code>pip install pyarrow</code>).</p>")
    test, train = ctx.birds_test["test"], ctx.birds_train
    spec = PipelineSpec.from_file(demo_spec_path())
    job = JobSpec.parse({"data": _source(test), "gallery": _source(train), "explain": "all", "pipeline": spec.model_dump()})
    out = ctx.out / "job"
    if out.exists():  # a demo run again into the same folder starts the job afresh
        import shutil

        shutil.rmtree(out)
    rep = run_job(job, out, data=test, gallery_data=train, progress=ctx.progress)
    site = build_site(out, ctx.out / "browse", query_data=test, gallery_data=train, title="xcorr demo: SynthBirds test",
                      progress=ctx.progress)
    methods = site.methods
    acc = {m: rep.summary[m]["top1_accuracy"] for m in methods}
    links = [("every query", "")] + [(f"{m} wrong", f"#wrong={m}") for m in methods]
    links += [(f"{m} fixes kNN", f"#fixed={m}") for m in methods if m != "knn"] + [("summary", "#view=summary")]
    body = (f"<p>The demo pipeline as a job (<code>xcorr run</code>) over the {rep.total} SynthBirds test queries, and "
            f"<code>xcorr browse</code> over its results: <a href='browse/index.html'><b>open the browser</b></a> "
            "(a static site: sort, filter, open a query to see its neighbours and the re-rankers' patch pairs).</p><p>"
            + " · ".join(f"<a href='browse/index.html{h}'>{html.escape(t)}</a>" for t, h in links) + "</p><p>Top-1 of the job: "
            + ", ".join(f"{html.escape(m)} {a:.1%}" for m, a in acc.items()) + " (the same decisions as the classification section).</p>")
    report = {"queries": rep.total, "errors": rep.errors, "methods": methods, "top1_accuracy": acc, "site": "browse/index.html",
              "job": "job", "data_files": site.chunks, "pictures": site.pictures}
    return DemoSection(title="Browse the SynthBirds job", report=report, html=body)
