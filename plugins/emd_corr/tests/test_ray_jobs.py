"""The EMD-Corr job on a local Ray (2 CPUs, no dashboard): the same table as the local executor,
row for row; a killed actor and a batch that raises once cost a retry; resume on Ray."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from xcorr_core.jobs import JobSpec, read_results, run_job  # noqa: E402

JOB = {
    "data": {"kind": "synthbirds", "split": "test", "per_class": 2},
    "gallery": {"kind": "synthbirds", "split": "train", "per_class": 6},
    "batch_size": 12,
    "store": {"shard_rows": 50},
    "pipeline": {"shortlist": 30, "rerankers": [{"name": "emd_corr"}], "decision": {"k": 10},
                 "explainers": [{"name": "nearest_neighbours", "config": {"top": 3}}], "metrics": [{"name": "top1_accuracy"}]},
}


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Fault-injection marker files (their paths reach the actors through the environment)."""
    d = tmp_path_factory.mktemp("markers")
    return {"die": d / "die", "fail": d / "fail"}


@pytest.fixture(scope="module")
def local_ray(markers: dict[str, Path]):  # noqa: ANN201
    os.environ["XCORR_JOB_DIE_ONCE"] = str(markers["die"])
    os.environ["XCORR_JOB_FAIL_ONCE"] = str(markers["fail"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    os.environ.pop("XCORR_JOB_DIE_ONCE", None)
    os.environ.pop("XCORR_JOB_FAIL_ONCE", None)


@pytest.fixture(scope="module")
def local_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "A"
    run_job(JobSpec.parse(JOB), out, progress=False)
    return out


def _same(a: Path, b: Path) -> None:
    ta, tb = read_results(a), read_results(b)
    assert ta.column_names == tb.column_names
    for c in ta.column_names:
        if c.endswith(("_scores", "_weights")):  # features from 1-thread actors vs the 2-thread driver: last-bit float noise at most
            assert np.allclose(np.array(ta[c].to_pylist(), dtype=float), np.array(tb[c].to_pylist(), dtype=float), atol=1e-5), c
        else:
            assert ta[c].to_pylist() == tb[c].to_pylist(), c


def test_ray_equals_local_row_for_row_despite_a_killed_actor_and_a_raising_batch(local_ray: None, local_table: Path,
                                                                                tmp_path: Path, markers: dict[str, Path]) -> None:
    markers["die"].write_text("24")  # the actor that gets the batch starting at query 24 dies (os._exit) once
    markers["fail"].write_text("36")  # the batch starting at query 36 raises once
    rep = run_job(JobSpec.parse(JOB), tmp_path / "B", executor="ray", workers=2, progress=False)
    assert not markers["die"].exists() and not markers["fail"].exists()  # both faults happened
    assert rep.done == 48 and rep.errors == 0
    ids = read_results(tmp_path / "B")["query_id"].to_pylist()
    assert ids == list(range(48))  # every query exactly once
    _same(local_table, tmp_path / "B")
    # and Ray built the same gallery
    va = np.load(local_table / "gallery" / "vectors.npy")
    vb = np.load(tmp_path / "B" / "gallery" / "vectors.npy")
    assert np.allclose(va, vb, atol=1e-5)


def test_resume_on_ray_after_a_half_finished_local_run(local_ray: None, local_table: Path, tmp_path: Path) -> None:
    job = JobSpec.parse(JOB)
    run_job(job, tmp_path / "C", progress=False)
    manifest = json.loads((tmp_path / "C" / "manifest.json").read_text())
    # forget the last two parts, as if the job had stopped after two batches
    for part in manifest["parts"][2:]:
        (tmp_path / "C" / part["file"]).unlink()
    manifest["parts"] = manifest["parts"][:2]
    manifest["done"], manifest["status"] = 24, "running"
    (tmp_path / "C" / "manifest.json").write_text(json.dumps(manifest))
    rep = run_job(job, tmp_path / "C", executor="ray", workers=2, resume=True, progress=False)
    assert rep.ran == 24 and rep.done == 48
    _same(local_table, tmp_path / "C")
