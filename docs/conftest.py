"""Run the docs' code blocks as tests (`make test` collects `docs/`), through sybil.

Each page is one document: its python blocks share one namespace and run in page order, in a
fresh temp folder that is also the working folder of its bash blocks, so a file one block writes
is there for the next. The temp folder holds links to the repository's sources (`examples/`,
`plugins/`, `xcorr_core/`, `pyproject.toml`, ...) so relative paths in the pages resolve as they do
for a user in a checkout, while what the blocks write stays in the temp folder.

Bash blocks run with `bash -euo pipefail` and the test venv's `bin/` first on PATH. `pip` there is
a shim: `pip install ARGS` installs ARGS without dependencies and without the index into the
block's own `site/` folder (on PYTHONPATH for the rest of the block), so the command is really run
and the test venv is left as it was.

Markers in the markdown (HTML comments, invisible on the site):
- `<!-- skip: next "reason" -->` skips the next block and shows the reason in the test report;
  used for blocks that need the network (hub weights), a cluster, or are `make` itself.
  A fragment by design says so: `<!-- skip: next "a fragment: ..." -->`.
- `<!-- spec -->` before a yaml block: it is a pipeline spec and must validate.
- `<!-- job -->` before a yaml block: it is a job file and must validate.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import yaml
from sybil import Example, Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BASH_TIMEOUT_S = 600
# a block that takes longer than this here should say how long, in the block or the text just before
# it ("about 30 s here"), so a reader pasting the page knows what to expect; a block that does not
# gets a warning in the test summary
SLOW_S = 20.0
_TIMING_NOTE = re.compile(r"\d+\s*(s|min) here")

_PIP_SHIM = """#!/usr/bin/env bash
# docs tests: pip install into this block's site/ folder, never into the test venv
set -euo pipefail
if [ "${1:-}" = install ]; then
  shift
  exec "%(python)s" -m pip install --disable-pip-version-check -q --no-deps --no-index \\
    --no-build-isolation --target "$XCORR_DOCS_SITE" "$@"
fi
exec "%(python)s" -m pip "$@"
"""


# what a page may read from the checkout; outputs (demo-out/, team-out/, A/) land in the temp folder
_LINKED = ("pyproject.toml", "README.md", "xcorr_core", "plugins", "examples", "scripts", "benchmarks")


def _page_folder(namespace: dict) -> Path:
    return Path(namespace["__docs_folder__"])


def _setup(namespace: dict) -> None:
    folder = Path(tempfile.mkdtemp(prefix="xcorr-docs-"))
    for name in _LINKED:
        if (ROOT / name).exists():
            (folder / name).symlink_to(ROOT / name)
    namespace["__docs_folder__"] = str(folder)
    namespace["__docs_cwd__"] = os.getcwd()
    os.chdir(folder)


def _teardown(namespace: dict) -> None:
    os.chdir(namespace["__docs_cwd__"])
    shutil.rmtree(namespace["__docs_folder__"], ignore_errors=True)
    import matplotlib.pyplot as plt  # pages draw figures; free them between pages

    plt.close("all")


def _run_bash(example: Example) -> None:
    folder = _page_folder(example.namespace)
    shims = folder / ".docs-bin"
    shims.mkdir(exist_ok=True)
    pip = shims / "pip"
    pip.write_text(_PIP_SHIM % {"python": sys.executable})
    pip.chmod(0o755)
    site = folder / ".docs-site"
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(shims), str(BIN), env.get("PATH", "")])
    env["XCORR_DOCS_SITE"] = str(site)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(site), env.get("PYTHONPATH", "")] if p)
    env["MPLBACKEND"] = "Agg"
    # its own process group, so a timeout stops every command the block started, not only bash
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", example.parsed], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=BASH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"bash block at line {example.line} ran past {BASH_TIMEOUT_S} s and was stopped") from None
    if proc.returncode != 0:
        raise AssertionError(
            f"bash block at line {example.line} exited {proc.returncode}\n"
            f"--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}"
        )


_SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.M)
_python = PythonEvaluator()


def _run_python(example: Example) -> None:
    """Run a python block; a block that only includes files (`--8<-- "path"`, pymdownx.snippets)
    compiles each file: those files are the template plugin, which its own tests import and run."""
    source = example.parsed.strip()
    included = _SNIPPET.findall(source)
    if included and not _SNIPPET.sub("", source).strip():
        for name in included:
            path = ROOT / name
            assert path.is_file(), f"the page includes {name}, which does not exist"
            compile(path.read_text(), str(path), "exec")
        return
    _python(example)


class _PythonBlocks(PythonCodeBlockParser):
    def __init__(self) -> None:
        super().__init__()
        self.codeblock_parser = CodeBlockParser("python", _timed(_run_python))


def _timed(evaluate):
    def run(example: Example) -> None:
        start = time.perf_counter()
        evaluate(example)
        took = time.perf_counter() - start
        text = example.document.text
        context = text[max(0, example.start - 400): example.end]
        if took > SLOW_S and not _TIMING_NOTE.search(context):
            # a warning in the test summary, not a failure: timings vary with load (speed is not tested)
            warnings.warn(f"{Path(example.path).name} block at line {example.line} took {took:.0f} s here; say so on the "
                          f"page, in the block or just before it (e.g. 'about {took:.0f} s here')", stacklevel=1)

    return run


def _check_yaml(kind: str):
    def evaluate(example: Example) -> None:
        from xcorr_core.jobs import JobSpec
        from xcorr_core.spec import PipelineSpec

        source = _SNIPPET.sub(lambda m: (ROOT / m.group(1)).read_text(), example.parsed)
        data = yaml.safe_load(source)
        (PipelineSpec if kind == "spec" else JobSpec).model_validate(data)

    return evaluate


class _MarkedYamlParser:
    """A yaml block right after `<!-- spec -->` or `<!-- job -->` is validated as one."""

    def __init__(self) -> None:
        self._blocks = CodeBlockParser(language="yaml")

    def __call__(self, document):
        for region in self._blocks(document):
            before = document.text[: region.start].rstrip()
            kind = next((k for k in ("spec", "job") if before.endswith(f"<!-- {k} -->")), None)
            if kind is not None:
                region.evaluator = _check_yaml(kind)
                yield region


pytest_collect_file = Sybil(
    parsers=[
        SkipParser(),
        _PythonBlocks(),
        CodeBlockParser(language="bash", evaluator=_timed(_run_bash)),
        _MarkedYamlParser(),
    ],
    patterns=["*.md", "plugins/*.md"],
    setup=_setup,
    teardown=_teardown,
).pytest()
