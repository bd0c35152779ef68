"""`import xcorr_core` loads neither faiss nor the scale-out extra (ray, pyarrow): a user who only
extracts features or writes a plugin pays for neither, and a missing faiss fails where it is used."""

import subprocess
import sys


def test_import_xcorr_core_leaves_faiss_ray_pyarrow_unloaded() -> None:
    code = "import sys, xcorr_core; print(sorted(m for m in ('faiss', 'ray', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"import xcorr_core loaded {out}"


def test_gallery_index_loads_faiss_when_built() -> None:
    code = ("import sys, torch, xcorr_core; loaded = ['faiss' in sys.modules]; g = xcorr_core.GalleryIndex(4); "
            "loaded.append('faiss' in sys.modules); g.add(torch.eye(4)); print(loaded, g.search(torch.eye(4)[1:2], 1).positions.tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[False, True] [[1]]", out
