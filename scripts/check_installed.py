"""Check an installation from wheels, run from outside the source tree (`make check-wheels`).

Asserts that the packages are imported from site-packages (not the checkout), that `xcorr plugins`
lists every project plugin without a load error, that every shipped model and its card load, and
that each plugin's shipped weights load, and that `xcorr browse` finds its page files (package data).
Prints one JSON line; exits non-zero on any failure.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PLUGINS = ["cgc", "chm_corr", "emd_corr", "human_team_sim", "pairx", "protoknn", "scc_counterfactual"]


def main() -> None:
    source = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None
    import xcorr_core
    from xcorr_core.models import SHIPPED, load_pretrained, model_card

    where = Path(xcorr_core.__file__).resolve()
    assert "site-packages" in where.parts, f"xcorr_core imported from {where}, not an installed wheel"
    assert source is None or where.parent != source / "xcorr_core", f"xcorr_core imported from the checkout {where}, not the wheel"
    exe = Path(sys.executable).with_name("xcorr")
    listed = json.loads(subprocess.run([str(exe), "plugins", "--json"], capture_output=True, text=True, check=True).stdout)
    names = {p["name"]: p for p in listed}
    missing = [p for p in PLUGINS if p not in names]
    failed = {n: p.get("error") for n, p in names.items() if p.get("error")}
    assert not missing and not failed, f"plugins missing {missing}, failed {failed}"
    card = model_card()
    assert set(SHIPPED) <= set(card), f"model_card.json lacks {set(SHIPPED) - set(card)}: is weights/*.json package data?"
    models = {name: type(load_pretrained(name)).__name__ for name in SHIPPED}  # type: ignore[arg-type]
    import xcorr_cgc
    import xcorr_chm_corr.pretrained as chm
    import xcorr_protoknn
    import xcorr_scc_counterfactual as scc

    loaded = {"cgc": type(xcorr_cgc.load_pretrained("cgc")).__name__, "chm_corr": type(chm.load_pretrained()).__name__,
              "chm_corr_vit": type(chm.load_pretrained("birds_vit")).__name__,
              "protoknn": type(xcorr_protoknn.load_pretrained()).__name__,
              "scc_ssl": type(scc.load_auxiliary("ssl")).__name__, "scc_parts": type(scc.load_parts_detector()).__name__}
    import tempfile

    from xcorr_core.browse import build_site
    from xcorr_core.testing.jobs import synthetic_job

    with tempfile.TemporaryDirectory() as tmp:
        site = build_site(synthetic_job(Path(tmp) / "job", 30, classes=5, gallery=50), Path(tmp) / "site", progress=False)
        page = {f: (Path(site.site) / f).stat().st_size for f in ("index.html", "browse.js", "browse.css")}
    assert all(page.values()), f"the browser page's files are empty: {page}"
    print(json.dumps({"xcorr_core": str(where.parent), "plugins": sorted(names), "models": models, "plugin_models": loaded,
                      "browse_page_bytes": page}))


if __name__ == "__main__":
    main()
