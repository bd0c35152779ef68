"""``xcorr demo``: the embedded default end to end, with no training and no network.

Builds the gallery from SynthBirds train with the shipped classifier, classifies
the test set and its two out-of-distribution variants with kNN and with every
installed re-ranker (the pipeline in ``specs/demo.yaml``, also shipped as
``examples/demo_pipeline.yaml``), runs re-identification on SynthHerd with the
shipped embedding model, runs the demo pipeline as a job and builds the browser site over its
results (``OUT/browse/index.html``), lets plugins add sections, and writes
``report.json``, PNG figures and ``index.html`` to the output folder.
"""
from __future__ import annotations

import html
import json
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from . import __version__, registry
from .demo_report import DemoSection, demo_spec_path, html_table, right_and_wrong
from .data import PART_NAMES, SynthBirds, SynthHerd, apply_homography
from .fileio import atomic_write, make_dir
from .index import GalleryIndex
from .models import load_pretrained, model_card
from .pipeline import Pipeline
from .results import RunResult
from .spec import PipelineSpec
from .demo_browse import browse_section
from .demo_vit import vit_section
from .viz import plot_accuracy, plot_bird_samples, plot_herd_pair, save_figure

__all__ = ["run_demo", "DemoContext", "DemoSection", "demo_spec_path", "html_table", "right_and_wrong"]


class DemoContext(BaseModel):
    """What a demo section may use."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    out: Path
    progress: bool | None
    birds_model: Any
    herd_model: Any
    birds_train: Any
    birds_test: dict[str, Any]
    herd_test: Any
    pipeline: Any = None
    results: list[Any] = Field(default_factory=list)
    _maps: dict[tuple[Any, ...], torch.Tensor] = PrivateAttr(default_factory=dict)

    def birds_maps(self, data: Any, batch: int = 128) -> torch.Tensor:
        """The shipped SynthBirds classifier's layer4 maps `[N, 256, 7, 7]` (float32) of a SynthBirds
        set, computed once per demo and shared by the sections that need them (CHM-Corr's PCK,
        ProtoKNN's pooled kNN, the counterfactual study): the same values each section computed
        before (batches of >= 64 give bit-identical maps here), one forward pass per image instead
        of up to three. Keyed by the set's generation parameters, so a set a section regenerates
        itself (same split, variant, seed, size, count) hits the cache too."""
        key = (data.split, data.variant, data.seed, data.size, data.num_classes, len(data))
        if key not in self._maps:
            with torch.no_grad():
                self._maps[key] = torch.cat([self.birds_model.forward_features(data.images[i:i + batch].float() / 255)
                                             for i in range(0, len(data), batch)])
        return self._maps[key]

    def save_figure(self, fig: Any, name: str) -> str:
        """Write ``fig`` as ``figures/NAME.png`` in the report folder and close it; returns the path
        relative to the report (what `DemoSection.figures` lists)."""
        rel = f"figures/{name}.png"
        save_figure(fig, self.out / rel)
        return rel

    def birds_plot_args(self, data: Any, i: int, gallery: Any = None) -> dict[str, Any]:
        """The arguments of a neighbour explanation's ``plot`` for query ``i`` of a SynthBirds set
        explained against ``gallery`` (default: the demo's, SynthBirds train): gallery images, the
        query image, class names and the true class."""
        g = gallery if gallery is not None else self.birds_train
        return {"images": g.image, "query": data.image(i), "class_names": g.class_names, "target": int(data.labels[i])}


def _log(msg: str) -> None:
    print(f"[xcorr demo] {msg}", flush=True)


def _classification_section(ctx: DemoContext) -> DemoSection:
    spec = PipelineSpec.from_file(demo_spec_path())
    pipe = Pipeline(spec, model=ctx.birds_model)  # index and store in a temp dir: the report stays small
    _log(f"gallery: SynthBirds train, {len(ctx.birds_train)} images; methods: {', '.join(pipe.methods)}")
    pipe.fit(ctx.birds_train, progress=ctx.progress)
    results: list[RunResult] = []
    for name, ds in ctx.birds_test.items():
        r = pipe.run(ds, name=name, progress=ctx.progress)
        results.append(r)
        _log(f"{name}: " + ", ".join(f"{m} {v['top1_accuracy']:.1%}" for m, v in r.summary().items()))
    ctx.pipeline, ctx.results = pipe, results
    figs = ["figures/accuracy.png"]
    save_figure(plot_accuracy(results), ctx.out / figs[0])
    clean = results[0]
    with_section = {p for p, _, _ in registry.demo_sections()}
    owner = {c.name: c.plugin for c in registry.components("reranker")}
    for method, mr in clean.methods.items():
        if owner.get(method) in with_section:  # its plugin's own section shows its explanations: once in the report
            continue
        for exp in mr.explanations:
            if not hasattr(exp, "support_ids"):
                continue
            i = int(exp.query_id)
            ok = exp.prediction == int(mr.targets[i])
            figs.append(ctx.save_figure(exp.plot(**ctx.birds_plot_args(ctx.birds_test["test"], i)),
                                        f"explain_{method}_{exp.method}_{'correct' if ok else 'wrong'}_{i}"))
    rows = [[r.dataset, m, f"{res.metrics['top1_accuracy'].value:.1%}",
             "[{:.1%}, {:.1%}]".format(*res.metrics["top1_accuracy"].ci), f"{res.metrics['mean_confidence'].value:.2f}",
             f"{res.seconds * 1000 / r.n:.2f}"] for r in results for m, res in r.methods.items()]
    report = {"spec": spec.model_dump(), "methods": pipe.methods,
              "results": {r.dataset: {m: {"top1_accuracy": res.metrics["top1_accuracy"].value,
                                          "ci95": list(res.metrics["top1_accuracy"].ci or ()),
                                          "mean_confidence": res.metrics["mean_confidence"].value,
                                          "ms_per_query": res.seconds * 1000 / r.n, "n": r.n}
                                      for m, res in r.methods.items()} for r in results}}
    note = ("<p>Only kNN ran: no re-ranker plugin is installed. Install one (e.g. <code>pip install plugins/emd_corr</code>) "
            "and it is compared here automatically.</p>") if len(pipe.methods) == 1 else ""
    body = note + html_table(rows, ["data set", "method", "top-1", "95% CI (Wilson)", "mean confidence", "ms / query"])
    return DemoSection(title="SynthBirds classification: kNN and re-rankers, in and out of distribution", report=report, figures=figs, html=body)


def _data_section(ctx: DemoContext) -> DemoSection:
    figs = []
    for name, ds in [("train", ctx.birds_train)] + list(ctx.birds_test.items())[1:]:
        rel = f"figures/birds_{name}.png"
        save_figure(plot_bird_samples(ds, list(range(0, 6)), PART_NAMES), ctx.out / rel)
        figs.append(rel)
    herd = ctx.herd_test
    a, b = 0, 1
    Hab = herd.true_homography(a, b)
    ys, xs = torch.nonzero(herd.visible[a], as_tuple=True)
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(xs.numel(), generator=g)[:10]
    pa = torch.stack([xs[pick], ys[pick]], 1).double() + 0.5
    pb = apply_homography(Hab, pa)
    rel = "figures/herd_true_correspondences.png"
    save_figure(plot_herd_pair(herd.image(a), herd.image(b), pa, pb, "SynthHerd: true correspondences from the known homography"), ctx.out / rel)
    figs.append(rel)
    return DemoSection(title="The embedded data", figures=figs,
                       report={"birds_train": len(ctx.birds_train), **{k: len(v) for k, v in ctx.birds_test.items()}, "herd_test": len(herd)},
                       html="<p>SynthBirds with part keypoints (dots visible, crosses hidden) and boxes; the sticker and style "
                            "variants; two photos of one SynthHerd individual joined by their true correspondences.</p>")


def _reid_section(ctx: DemoContext) -> DemoSection:
    herd = ctx.herd_test
    emb = torch.cat([ctx.herd_model(herd.images[i:i + 128].float() / 255) for i in range(0, len(herd), 128)]).detach()
    first = torch.arange(len(herd)) % herd.photos == 0
    index = GalleryIndex(emb.shape[1])
    index.add(emb[~first], herd.labels[~first])
    res = index.search(emb[first], 5)
    r1 = float((res.labels[:, 0] == herd.labels[first]).float().mean())
    r5 = float((res.labels == herd.labels[first][:, None]).any(1).float().mean())
    report = {"queries": int(first.sum()), "gallery": int((~first).sum()), "recall_at_1": r1, "recall_at_5": r5}
    _log(f"SynthHerd re-identification: recall@1 {r1:.1%}, recall@5 {r5:.1%}")
    return DemoSection(title="SynthHerd re-identification with the shipped embedding", report=report,
                       html=f"<p>First photo of each test individual as query, the others as gallery: recall@1 {r1:.1%}, recall@5 {r5:.1%}.</p>")


def _write_html(out: Path, sections: list[DemoSection], card: dict[str, Any], skipped: list[dict[str, str]] | None = None) -> None:
    parts = [f"<h1>xcorr demo</h1><p>xcorr-core {__version__}. Plugins: "
             + html.escape(", ".join(f"{p.name} {p.version}" + (" (FAILED)" if p.error else "") for p in registry.plugins())) + "</p>"]
    if skipped:
        items = "".join(f"<li>{html.escape(s['section'])}: plugin <code>{html.escape(s['plugin'])}</code> {html.escape(s['why'])}; "
                        f"<code>{html.escape(s['install'])}</code></li>" for s in skipped)
        parts.append(f"<div class='err'><b>Sections skipped</b><ul>{items}</ul></div>")
    if (out / "browse" / "index.html").is_file():
        parts.append("<p><b>Browse every SynthBirds test query</b> (table, filters, neighbours and correspondences): "
                     "<a href='browse/index.html'>browse/index.html</a>, written by <code>xcorr browse</code>.</p>")
    if card:
        parts.append("<details><summary>Shipped models</summary><pre>" + html.escape(json.dumps(card, indent=2)) + "</pre></details>")
    for s in sections:
        took = f" <small>({s.seconds} s)</small>" if s.seconds is not None else ""
        parts.append(f"<h2>{html.escape(s.title)}{took}</h2>")
        if s.error:
            parts.append(f"<pre class='err'>{html.escape(s.error)}</pre>")
        parts.append(s.html)
        parts += [f"<figure><img src='{html.escape(f)}' alt='{html.escape(f)}'></figure>" for f in s.figures]
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:14px}"
             "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}.err{color:#b00;background:#fee;padding:8px}")
    doc = f"<!doctype html><html><head><meta charset='utf-8'><title>xcorr demo</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
    atomic_write(out / "index.html", lambda f: f.write(doc.encode()))


#: the project's own plugins and the demo section each adds (shown as skipped, with the install, when missing)
PROJECT_PLUGINS: dict[str, str] = {
    "emd_corr": "EMD-Corr vs kNN", "chm_corr": "CHM-Corr and CHM-Corr+ vs kNN and EMD-Corr", "cgc": "CGC on SynthBirds",
    "human_team_sim": "Human-AI teams (CUB study)", "pairx": "PAIR-X on SynthHerd", "protoknn": "ProtoKNN on SynthBirds",
    "scc_counterfactual": "Semantically consistent counterfactuals on SynthBirds",
}


def _skipped_sections() -> list[dict[str, str]]:
    """The project plugins' sections this demo cannot show: not installed, or failed to load (with the install that adds them)."""
    loaded = {p.name: p for p in registry.plugins()}
    out = []
    for name, title in PROJECT_PLUGINS.items():
        p = loaded.get(name)
        if p is None or p.error:
            out.append({"plugin": name, "section": title, "why": "failed to load: " + str(p.error) if p is not None else "not installed",
                        "install": f"pip install plugins/{name}  (from the xcorr source tree)"})
    return out


def run_demo(out: str | Path = "demo-out", *, progress: bool | None = None, quick: bool = False) -> dict[str, Any]:
    """Run the demo; returns the report (also written to ``out/report.json``).

    ``quick`` uses smaller data sets (for tests).
    """
    t0 = time.perf_counter()
    out = Path(out)
    make_dir(out / "figures")
    torch.manual_seed(0)
    per_train, per_test, herd_n = (6, 2, 6) if quick else (30, 10, 40)
    _log("SynthBirds and SynthHerd (generated, or read from the data cache) ...")
    td = time.perf_counter()
    ctx = DemoContext(
        out=out, progress=progress, birds_model=load_pretrained("birds"), herd_model=load_pretrained("herd"),
        birds_train=SynthBirds("train", per_class=per_train, progress=progress),
        birds_test={v if v != "clean" else "test": SynthBirds("test", v, per_class=per_test, progress=progress)  # type: ignore[arg-type]
                    for v in ("clean", "sticker", "style")},
        herd_test=SynthHerd("test", individuals=herd_n, progress=progress),
    )
    data_seconds = round(time.perf_counter() - td, 1)
    _log(f"data and models ready in {data_seconds} s")
    builtin = [("xcorr_core", "data", _data_section), ("xcorr_core", "classification", _classification_section),
               ("xcorr_core", "reid", _reid_section)]
    sections: list[DemoSection] = []
    # the browser's job runs last: the sections before it see the global RNG state they always saw
    todo = builtin + registry.demo_sections() + [("xcorr_core", "the same explanations on a ViT", vit_section),
                                                 ("xcorr_core", "browse the SynthBirds job", browse_section)]
    for i, (plugin, title, run) in enumerate(todo, 1):
        _log(f"[{i}/{len(todo)}] {title} ({plugin}) ...")
        ts = time.perf_counter()
        try:
            with torch.no_grad():
                sec = run(ctx)
            if not isinstance(sec, DemoSection):
                sec = DemoSection.model_validate(sec)
        except Exception as exc:  # noqa: BLE001 - a failing section is reported, the rest still runs
            _log(f"section {title!r} from {plugin} failed: {type(exc).__name__}: {exc}")
            sec = DemoSection(title=title, error="".join(traceback.format_exception(exc))[-4000:])
        sec.seconds = round(time.perf_counter() - ts, 1)
        _log(f"[{i}/{len(todo)}] {title}: {'failed' if sec.error else 'done'} in {sec.seconds} s")
        sections.append(sec)
    skipped = _skipped_sections()
    for sk in skipped:
        _log(f"section {sk['section']!r} skipped: plugin {sk['plugin']} {sk['why']}; {sk['install']}")
    report = {
        "xcorr_core": __version__,
        "skipped_sections": skipped,
        "plugins": [p.model_dump(exclude={"components"}) | {"components": [c.name for c in p.components]} for p in registry.plugins()],
        "models": model_card(),
        "sections": [s.model_dump(exclude={"html"}) for s in sections],
        "data_seconds": data_seconds,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write(out / "report.json", lambda f: f.write(json.dumps(report, indent=2, default=str).encode()))
    _write_html(out, sections, model_card(), skipped)
    _log(f"wrote {out / 'report.json'}, {out / 'index.html'} and {sum(len(s.figures) for s in sections)} figures in {report['seconds']} s")
    return report
