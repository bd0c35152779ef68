"""Let a fresh venv see another venv's third-party packages without copying them (`make check-wheels`).

A second install of torch with its CUDA libraries costs about 6 GB, more than CI's disk may have
free. Instead, this links every entry of SOURCE's site-packages, except the project's own packages
and their editable-install hooks, into DEST/xcorr-shared-deps and adds that folder to DEST's path
with a `.pth` file. pip in DEST then sees the dependencies as installed, so installing the wheels
still checks that every declared dependency is satisfied, while the project's packages can only
come from the wheels.

Usage: python scripts/share_deps.py SOURCE_VENV DEST_VENV
"""
from __future__ import annotations

import sys
from pathlib import Path

# The project's own distributions and what pip/venv put in every environment.
SKIP_PREFIXES = ("xcorr", "__editable__", "_virtualenv", "pip", "setuptools", "distutils-precedence", "__pycache__")


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise SystemExit(f"no site-packages under {venv}")
    return found[0]


def main() -> None:
    source, dest = (Path(a).resolve() for a in sys.argv[1:3])
    src_site, dest_site = site_packages(source), site_packages(dest)
    shared = dest / "xcorr-shared-deps"
    shared.mkdir(exist_ok=True)
    linked = 0
    for entry in src_site.iterdir():
        name = entry.name.lower().replace("-", "_")
        if name.startswith(SKIP_PREFIXES) or entry.suffix == ".pth":
            continue
        (shared / entry.name).symlink_to(entry)
        linked += 1
    (dest_site / "xcorr-shared-deps.pth").write_text(f"{shared}\n")
    print(f"linked {linked} entries of {src_site} into {shared}")


if __name__ == "__main__":
    main()
