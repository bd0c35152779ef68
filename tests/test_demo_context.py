"""The demo's shared classifier maps: equal to the model's own pass, computed once per set."""
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
