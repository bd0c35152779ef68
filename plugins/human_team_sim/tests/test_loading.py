"""Loaders: configurable columns; malformed rows and files get errors naming line and column."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import xcorr_core as xc
from xcorr_core.errors import InputError
from xcorr_human_team_sim import ColumnMap, load_ai_predictions, load_trials

HEADER = "who,img,arm,ai_ok,conf,ok\n"


def _write(tmp_path: Path, body: str, header: str = HEADER, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text(header + body)
    return p


COLS = ColumnMap(user="who", query="img", arm="arm", ai_correct="ai_ok", confidence="conf", user_correct="ok")


def test_custom_columns_and_derived_accept(tmp_path: Path) -> None:
    p = _write(tmp_path, "u1,a.jpg,X,1,0.9,1\nu1,b.jpg,X,0,0.4,1\nu2,a.jpg,Y,1,0.9,0\n")
    t = load_trials(p, COLS)
    assert t.arms == ["X", "Y"] and t.users == ["u1", "u2"]
    assert t.accepted.tolist() == [True, False, False]  # accept <=> user_correct == ai_correct


@pytest.mark.parametrize("body, match", [
    ("u1,a.jpg,X,2,0.9,1\n", r"t\.csv:2: column 'ai_ok' \(ai_correct\)"),
    ("u1,a.jpg,X,1,0.9,1\nu1,b.jpg,X,1,1.5,1\n", r"t\.csv:3: column 'conf' \(confidence\)"),
    ("u1,a.jpg,X,1,abc,1\n", r"t\.csv:2: column 'conf'"),
    (",a.jpg,X,1,0.5,1\n", r"t\.csv:2: column 'who' \(user\)"),
    ("u1,a.jpg,X,1,0.5,1\nu1,b.jpg,Y,1,0.5,1\n", "more than one arm"),
    ("", "no trials"),
])
def test_malformed_rows(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        load_trials(_write(tmp_path, body), COLS)


def test_missing_column_and_file(tmp_path: Path) -> None:
    p = _write(tmp_path, "u1,a.jpg,X,1,0.9,1\n", header="who,img,arm,ai_ok,confidence,ok\n")
    with pytest.raises(InputError, match=r"missing column\(s\) 'conf' \(for confidence\); the header has: who, img"):
        load_trials(p, COLS)
    with pytest.raises(InputError, match="no such file"):
        load_trials(tmp_path / "nope.csv")
    with pytest.raises(Exception):
        ColumnMap(usr="x")  # unknown field


def test_ai_predictions(tmp_path: Path) -> None:
    p = _write(tmp_path, "1,0.5,0,0.2\n0,0.9,1,1.0\n", header="a_correct,a_conf,b_correct,b_conf\n", name="ai.csv")
    ai = load_ai_predictions(p)
    assert set(ai) == {"a", "b"} and ai["a"].accuracy == 0.5 and ai["b"].confidence.tolist() == [0.2, 1.0]
    with pytest.raises(InputError, match="methods found: a, b"):
        load_ai_predictions(p, ["c"])
    bad = _write(tmp_path, "1,1.2\n", header="a_correct,a_conf\n", name="bad.csv")
    with pytest.raises(InputError, match=r"bad\.csv:2: column 'a_conf'"):
        load_ai_predictions(bad)


def test_metric_components(tmp_path: Path) -> None:
    xc.reload_plugins()
    from xcorr_human_team_sim import bundled_paths

    trials = load_trials(bundled_paths()[0])
    ai = load_ai_predictions(bundled_paths()[1])
    r = xc.create("statistic", "human_accuracy", arm="EMD-Corr").compute(trials=trials)
    assert round(100 * r.value, 2) == 67.64 and r.ci[0] < r.value < r.ci[1] and r.n == 58
    t = xc.create("statistic", "team_accuracy", arm="ResNet-50", ai_method="resnet", threshold=0.55, n_boot=200).compute(trials=trials, ai=ai)
    assert round(100 * t.value, 2) == 87.45 and t.ci[0] < t.value < t.ci[1]
    with pytest.raises(InputError, match="trials=TrialTable"):
        xc.create("statistic", "human_accuracy", arm="kNN").compute()
    with pytest.raises(xc.ConfigError, match="'arm'"):
        xc.create("statistic", "human_accuracy")
    p = xc.create("statistic", "study_power", users=30, sims=200,
                  arm_a={"name": "a", "accept_if_ai_right": 0.85, "accept_if_ai_wrong": 0.5},
                  arm_b={"name": "b", "accept_if_ai_right": 0.96, "accept_if_ai_wrong": 0.67}).compute()
    assert 0 < p.value < 1 and p.details["users_per_arm"] == 30


def test_cli_on_a_custom_study(tmp_path: Path) -> None:
    from xcorr_core import cli

    lines = []
    for u in range(6):
        arm = "X" if u < 3 else "Y"
        for i in range(10):
            lines.append(f"u{u},q{i}.jpg,{arm},{int(i % 2 == 0)},{(i + 1) / 11:.3f},{int((i + u) % 3 != 0)}")
    trials = _write(tmp_path, "\n".join(lines) + "\n")
    ai = _write(tmp_path, "".join(f"{int(i % 4 != 0)},{(i % 10) / 10:.1f}\n" for i in range(50)), header="m_correct,m_conf\n", name="ai.csv")
    out = tmp_path / "out"
    xc.reload_plugins()
    code = cli.main(["team", "--trials", str(trials), "--ai", str(ai), "--columns", json.dumps(COLS.model_dump()),
                     "--arm-map", "m=X", "--min-accuracy", "0", "--boot", "200", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "team.json").read_text())
    assert [a["arm"] for a in report["arms"]] == ["X", "Y"] and report["team"][0]["arm"] == "X"
    assert (out / "team_curves.png").stat().st_size > 1000
    assert report["reference"] is None and report["team"][0]["paper_threshold"] is None  # no CUB figures for other data



def test_reference_presets_are_shown_only_when_named(capsys) -> None:
    from xcorr_human_team_sim import bundled_paths, load_ai_predictions, load_trials
    from xcorr_human_team_sim.report import REFERENCES, analyse, format_report

    trials, ai_path = bundled_paths()
    table, ai = load_trials(trials), load_ai_predictions(ai_path)
    mine = analyse(table, ai, n_boot=50)
    assert mine.reference is None and all(t.paper_threshold is None and t.paper_team_accuracy is None for t in mine.team)
    text = format_report(mine)
    # ours reproduce the CUB paper's 65.50; its paper column stays empty without a reference
    assert "65.50   7.46    -  " in text and "none (pass a reference" in text
    cub = analyse(table, ai, n_boot=50, reference="cub")
    resnet = next(t for t in cub.team if t.arm == "ResNet-50")
    assert resnet.paper_threshold == 0.55 and round(100 * resnet.paper_threshold_accuracy, 2) == 87.45
    assert "65.50   7.46  65.50" in format_report(cub)
    inet = analyse(table, ai, n_boot=50, reference="imagenet-real")
    resnet = next(t for t in inet.team if t.arm == "ResNet-50")
    assert resnet.paper_threshold is None and resnet.paper_team_accuracy == REFERENCES["imagenet-real"].table3["ResNet-50"][1]
    assert "65.50   7.46  81.56" in format_report(inet)
    with pytest.raises(xc.InputError, match="reference"):
        analyse(table, ai, n_boot=50, reference="imagenet")


def test_true_false_columns(tmp_path: Path) -> None:
    t = load_trials(_write(tmp_path, "u1,q1,X,True,0.5,false\nu1,q2,X,FALSE,0.2,1\n"), COLS)
    assert t.ai_correct.tolist() == [True, False] and t.user_correct.tolist() == [False, True]
    ai = load_ai_predictions(_write(tmp_path, "True,0.9\nFalse,0.1\n1,0.5\n", header="m_correct,m_conf\n", name="ai.csv"))
    assert ai["m"].correct.tolist() == [True, False, True]
    with pytest.raises(InputError, match="True/False"):
        load_trials(_write(tmp_path, "u1,q1,X,yes,0.5,1\n", name="bad.csv"), COLS)


def test_pickled_predictions_arrays_only(tmp_path: Path) -> None:
    import os
    import pickle

    import numpy as np

    good = tmp_path / "ai.pkl"
    good.write_bytes(pickle.dumps({"resnet": {"correct": np.array([1, 0, 1]), "confidence": np.array([0.9, 0.2, 0.6], np.float32)},
                                   "knn_correct": np.array([True, True, False]), "knn_conf": np.array([0.5, 0.7, 0.1])}))
    ai = load_ai_predictions(good)
    assert sorted(ai) == ["knn", "resnet"] and ai["resnet"].correct.tolist() == [True, False, True]
    assert ai["knn"].confidence.tolist() == [0.5, 0.7, 0.1]

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"m": {"correct": Evil(), "confidence": np.array([0.5])}}))
    with pytest.raises(InputError, match="only numpy arrays"):
        load_ai_predictions(evil)
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(InputError, match="pickle"):
        load_ai_predictions(tmp_path / "junk.pkl")
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"m": {"correct": np.array([2, 0]), "confidence": np.array([0.5, 0.5])}}))
    with pytest.raises(InputError, match="0/1"):
        load_ai_predictions(bad)


def test_cli_options_of_another_study(tmp_path: Path, capsys) -> None:
    from xcorr_core import cli

    lines = []
    for u in range(6):
        arm = "X" if u < 3 else "Y"
        for i in range(10):
            lines.append(f"{100 + u},q{i}.jpg,{arm},{int(i % 2 == 0)},{(i + 1) / 11:.3f},{int((i + u) % 3 != 0)}")
    trials = _write(tmp_path, "\n".join(lines) + "\n")
    ai = _write(tmp_path, "".join(f"{int(i % 4 != 0)},{(i % 10) / 10:.1f}\n" for i in range(50)), header="m_correct,m_conf\n", name="ai.csv")
    base = ["team", "--trials", str(trials), "--ai", str(ai), "--columns", json.dumps(COLS.model_dump()), "--min-accuracy", "0",
            "--boot", "100"]
    xc.reload_plugins()
    out = tmp_path / "o"
    assert cli.main([*base, "--arm-map", "m=X", "--exclude", "100,", "--threshold", "m=0.45", "--n-pick", "10",
                     "--n-report", "20", "--out", str(out)]) == 0
    rep = json.loads((out / "team.json").read_text())
    assert rep["users_dropped"] == 1 and rep["team"][0]["fixed_threshold"] == 0.45
    assert rep["team"][0]["authors_split"]["details"]["n_pick"] == 10 and "m T=0.45" in capsys.readouterr().out
    for extra, msg in ((["--arm-map", "m=Z"], "arm"), (["--arm-map", "m"], "method=arm"), (["--arm-map", "q=X"], "AI method"),
                       (["--threshold", "m=high", "--arm-map", "m=X"], "not a number"),
                       (["--threshold", "m=1.5", "--arm-map", "m=X"], "lie in"), (["--exclude", "999", "--arm-map", "m=X"], "unknown user")):
        assert cli.main([*base, *extra, "--out", str(tmp_path / "x")]) == 2
        assert msg in capsys.readouterr().err
    assert cli.main([*base[:5], "--columns", "{user: who}", "--out", str(tmp_path / "x")]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert cli.main([*base[:5], "--columns", '{"worker": "who"}', "--out", str(tmp_path / "x")]) == 2
    assert "--columns must map" in capsys.readouterr().err
    (tmp_path / "img.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    assert cli.main(["team", "--trials", str(tmp_path / "img.csv"), "--out", str(tmp_path / "x")]) == 2
    assert "not UTF-8" in capsys.readouterr().err
