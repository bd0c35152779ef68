"""Large studies (issue 27): the columnar table equals the per-row one, Mann-Whitney picks a method
that is exact only where it is exact and finite, and a 600-users-per-arm study runs end to end."""
from __future__ import annotations

import csv
import gzip
import io
import json
import math
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from xcorr_core.errors import InputError
from xcorr_human_team_sim import TrialRow, TrialTable, bundled_paths, load_trials
from xcorr_human_team_sim.stats import EXACT_MAX_PAIRS, mann_whitney

ROW = st.builds(TrialRow, user=st.sampled_from(["u3", "u1", "u10", "u2", "ü"]), query=st.sampled_from(["q1", "q2", "q9"]),
                arm=st.just("A"), ai_correct=st.booleans(), confidence=st.floats(0, 1), user_correct=st.booleans())


def _same(a: TrialTable, b: TrialTable) -> None:
    assert (a.users, a.arms, a.query) == (b.users, b.arms, b.query)
    for name in ("user", "arm", "ai_correct", "user_correct", "confidence"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def _arms(rows: list[TrialRow]) -> list[TrialRow]:
    """Give each user one arm (between subjects): users whose id ends in an even digit see arm B."""
    return [r.model_copy(update={"arm": "B" if r.user[-1] in "02468" else "A"}) for r in rows]


@given(st.lists(ROW, min_size=1, max_size=40), st.data())
def test_columnar_table_equals_rows_and_subsets(rows: list[TrialRow], data: st.DataObject) -> None:
    rows = _arms(rows)
    table = TrialTable(rows)
    assert table.rows() == rows
    cols = TrialTable.from_columns([r.user for r in rows], [r.arm for r in rows], [r.query for r in rows],
                                   np.array([r.ai_correct for r in rows]), np.array([r.confidence for r in rows]),
                                   np.array([r.user_correct for r in rows]))
    _same(table, cols)
    assert table.users == sorted({r.user for r in rows}) and table.arms == list(dict.fromkeys(r.arm for r in rows))
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows))))
    if mask.any():
        _same(table.subset(mask), TrialTable([r for r, keep in zip(rows, mask) if keep]))
    else:
        with pytest.raises(InputError, match="no trials"):
            table.subset(mask)


def test_csv_load_equals_row_table(tmp_path: Path) -> None:
    with gzip.open(bundled_paths()[0], "rt", newline="") as f:
        recs = list(csv.DictReader(f))
    rows = [TrialRow(user=r["UID"], query=r["Query"], arm=r["Method"], ai_correct=r["ClassifierCorrectness"],
                     confidence=r["ConfidenceScore"], user_correct=r["Correctness"]) for r in recs]
    _same(load_trials(bundled_paths()[0]), TrialTable(rows))


def test_from_columns_checks() -> None:
    with pytest.raises(InputError, match="one length"):
        TrialTable.from_columns(["u"], ["A", "B"], ["q"], np.array([True]), np.array([0.5]), np.array([True]))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        TrialTable.from_columns(["u"], ["A"], ["q"], np.array([True]), np.array([np.nan]), np.array([True]))
    with pytest.raises(InputError, match="empty user"):
        TrialTable.from_columns([""], ["A"], ["q"], np.array([True]), np.array([0.5]), np.array([True]))
    with pytest.raises(InputError, match="more than one arm"):
        TrialTable.from_columns(["u", "u"], ["A", "B"], ["q", "q"], np.ones(2, bool), np.full(2, 0.5), np.ones(2, bool))


def _normal_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided normal approximation of U with tie and continuity correction, by hand."""
    n1, n2 = x.size, y.size
    ranks = stats.rankdata(np.concatenate([x, y]))
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    _, t = np.unique(np.concatenate([x, y]), return_counts=True)
    n = n1 + n2
    sd = math.sqrt(n1 * n2 / 12 * ((n + 1) - (t ** 3 - t).sum() / (n * (n - 1))))
    z = (abs(u - n1 * n2 / 2) - 0.5) / sd
    return min(1.0, 2 * stats.norm.sf(z))


def test_mann_whitney_auto_picks_exact_only_where_exact() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random(30), rng.random(40) + 0.2  # no ties, small: exact
    assert mann_whitney(x, y).method == "exact"
    assert mann_whitney(x, y).p == pytest.approx(stats.mannwhitneyu(x, y, method="exact").pvalue)
    tx, ty = rng.integers(10, 30, 60) / 30, rng.integers(12, 30, 58) / 30  # per-user accuracies k/30: ties
    res = mann_whitney(tx, ty)
    assert res.method == "asymptotic" and res.p == pytest.approx(_normal_p(tx, ty), rel=1e-9)
    big_x, big_y = rng.random(600), rng.random(600) + 0.02  # no ties, but 360,000 pairs: too many for exact
    res = mann_whitney(big_x, big_y)
    assert res.method == "asymptotic" and 0 < res.p < 1 and res.p == pytest.approx(_normal_p(big_x, big_y), rel=1e-9)
    assert 600 * 600 > EXACT_MAX_PAIRS
    with pytest.raises(InputError, match="too large"):
        mann_whitney(big_x, big_y, "exact")
    with pytest.raises(InputError, match="finite"):
        mann_whitney(np.array([0.1, np.nan]), y)
    with pytest.raises(InputError, match="method must be"):
        mann_whitney(x, y, "fast")  # type: ignore[arg-type]


def test_team_on_600_users_per_arm(tmp_path: Path) -> None:
    """The issue's outside check: the CUB study's users repeated under new ids to ~600 per arm."""
    from xcorr_core.cli import main

    with gzip.open(bundled_paths()[0], "rt", newline="") as f:
        header, *body = f.read().splitlines()
    study = tmp_path / "big.csv"
    with open(study, "w") as out:
        out.write(header + "\n")
        for copy in range(10):
            out.writelines(f"{line.split(',', 1)[0]}~{copy},{line.split(',', 1)[1]}\n" for line in body)
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["team", "--trials", str(study), "--out", str(tmp_path / "out"), "--json", "--boot", "200"]) == 0
    report = json.loads(buf.getvalue())
    assert report["users_kept"] == 3550 and min(a["users"] for a in report["arms"]) == 580
    assert all(math.isfinite(t["p"]) and t["method"] == "asymptotic" for t in report["pairwise"])
    # ten copies of every user: the same means, so pairs that differed now differ far more clearly
    written = {(t["arm_a"], t["arm_b"]): t for t in json.loads((tmp_path / "out" / "team.json").read_text())["pairwise"]}
    assert written[("kNN", "CHM-Corr")]["p"] < 1e-15


def test_team_out_on_a_read_only_file_system(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import shutil
    import subprocess

    from xcorr_core.cli import main

    mnt = tmp_path / "ro"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount") or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        assert main(["team", "--out", str(mnt / "team-out"), "--boot", "10"]) == 2
        assert "xcorr: error: cannot write" in capsys.readouterr().err
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
