"""Weights shipped inside a package (the core's and every plugin's ``weights/`` folder): where a
file is, a clear error naming the script that makes it when it is missing, and the model cards
(JSON training figures) beside the weights. One helper, so every plugin finds, checks and
describes its shipped models the same way. Depends on the standard library and the core's errors.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import IndexFileError

__all__ = ["ShippedWeights"]


class ShippedWeights:
    """The ``folder`` of package ``package`` that holds shipped weights.

    Args:
        package: the importable package that ships the files (``"xcorr_cgc"``).
        script: how the files are made, quoted in the error when one is missing
            (``"plugins/cgc/scripts/cgc_study.py"``).
        folder: the folder inside the package (default ``weights``).
    """

    def __init__(self, package: str, script: str, folder: str = "weights") -> None:
        self.package, self.script, self.folder = package, script, folder

    @property
    def root(self) -> Path:
        return Path(str(resources.files(self.package) / self.folder))

    def path(self, name: str) -> Path:
        """Where the file ``name`` lives (it may be missing)."""
        return self.root / name

    def require(self, name: str) -> Path:
        """The file ``name``; `IndexFileError` naming the script that makes it when it is missing."""
        p = self.path(name)
        if not p.is_file():
            raise IndexFileError(f"shipped weights {p} are missing; run {self.script} to make them")
        return p

    def card(self, name: str = "model_card.json") -> dict[str, Any]:
        """A model card (training figures) of the folder, or ``{}`` when there is none."""
        p = self.path(name)
        return json.loads(p.read_text()) if p.is_file() else {}

    def __repr__(self) -> str:
        return f"ShippedWeights({self.package!r}, {self.script!r})"
