"""The demo's shared helpers: the classifier maps (equal to the model's own pass, computed once per set),
figures, plot arguments and the pick of decisions to draw."""
from __future__ import annotations

from pathlib import Path

import torch

from xcorr_core.data import SynthBirds
from xcorr_core.demo import DemoContext
from xcorr_core.models import load_pretrained


def test_birds_maps_are_the_models_maps_computed_once_per_set(tmp_path: Path) -> None:
    model = load_pretrained("birds").eval()
    train = SynthBirds("train", per_class=1, progress=False)
    test = SynthBirds("test", per_class=1, progress=False)
    calls: list[int] = []
    real = model.forward_features
    model.forward_features = lambda x: (calls.append(len(x)), real(x))[1]  # type: ignore[method-assign]
    ctx = DemoContext(out=tmp_path, progress=False, birds_model=model, herd_model=None, birds_train=train,
                      birds_test={"test": test}, herd_test=None)
    maps = ctx.birds_maps(train, batch=16)
    with torch.no_grad():
        assert torch.equal(maps, real(train.images.float() / 255))
    assert calls == [16, 8]  # 24 images in batches of 16
    again = SynthBirds("train", per_class=1, progress=False)  # the same set generated anew: a cache hit
    assert ctx.birds_maps(again) is maps and calls == [16, 8]
    other = ctx.birds_maps(test)
    assert other.shape == maps.shape and not torch.equal(other, maps) and calls == [16, 8, 24]


def test_section_helpers_save_figures_and_pick_decisions(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xcorr_core.demo import right_and_wrong

    train = SynthBirds("train", per_class=1, progress=False)
    test = SynthBirds("test", per_class=1, progress=False)
    ctx = DemoContext(out=tmp_path, progress=False, birds_model=None, herd_model=None, birds_train=train, birds_test={"test": test},
                      herd_test=None)
    fig, _ = plt.subplots()
    rel = ctx.save_figure(fig, "x_wrong_3")
    assert rel == "figures/x_wrong_3.png" and (tmp_path / rel).read_bytes()[:4] == b"\x89PNG" and not plt.get_fignums()
    args = ctx.birds_plot_args(test, 5)
    assert args["images"] == train.image and torch.equal(args["query"], test.image(5)) and args["target"] == int(test.labels[5])
    assert args["class_names"] == train.class_names and ctx.birds_plot_args(test, 5, gallery=test)["images"] == test.image
    pred, true = torch.tensor([1, 2, 2, 0, 4]), torch.tensor([1, 0, 2, 3, 4])
    assert right_and_wrong(pred, true) == [("correct", [0]), ("wrong", [1])]
    assert right_and_wrong(pred, true, n=5) == [("correct", [0, 2, 4]), ("wrong", [1, 3])]
    assert right_and_wrong(true, true) == [("correct", [0]), ("wrong", [])]
