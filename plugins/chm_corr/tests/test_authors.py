"""The authors' checkpoint layout: round trip through a file, clear errors, and their transfer."""
import pytest
import torch

from xcorr_core.errors import IndexFileError
from xcorr_chm_corr import authors_chmnet, load_authors_checkpoint


@pytest.fixture(scope="module")
def authors_file(tmp_path_factory):
    torch.manual_seed(0)
    model = authors_chmnet()
    state = model.state_dict()
    # make the two streams differ, as fine-tuning does, so a loader that merged them would fail
    w = state["backbone.layer3.0.conv2.weight"]
    w[w.shape[0] // 2:] += 0.01 * torch.randn_like(w[w.shape[0] // 2:])
    for k in [k for k in state if k.startswith("learner.chm")]:
        state[k] = torch.rand_like(state[k])  # peaked, trained-like CHM kernels
    path = tmp_path_factory.mktemp("ckpt") / "pas_psi.pt"
    torch.save(state, path)
    return path, state


def test_layout_has_the_authors_keys():
    sd = authors_chmnet().state_dict()
    assert len(sd) == 636
    assert sd["backbone.conv1.weight"].shape == (128, 3, 7, 7)
    assert sd["learner.conv2ds.0.weight"].shape == (256, 1024, 3, 3)
    assert [sd[f"learner.chm6d.param.{i}"].shape for i in range(4)] == [(55,)] * 4
    assert sd["learner.chm4d.weight"].shape == (55,) and sd["learner.chm6d.bias"].shape == (1,)
    assert "backbone.layer4.2.conv3.weight" in sd and "backbone.fc.weight" in sd


def test_round_trip_keeps_both_streams_and_transfers(authors_file):
    path, state = authors_file
    model = load_authors_checkpoint(path)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    g = torch.Generator().manual_seed(1)
    src, trg = torch.randn(1, 3, 240, 240, generator=g), torch.randn(1, 3, 240, 240, generator=g)
    pts = torch.tensor([[[18.0, 18.0], [120.0, 86.0], [222.0, 222.0]]])
    with torch.no_grad():
        out = model.transfer(src, trg, pts)
        fs, ft = model.features(src, trg)
    assert out.shape == (1, 3, 2) and bool(torch.isfinite(out).all())
    assert bool(((out >= 0) & (out <= 240)).all())
    assert fs.shape == (1, 1024, 15, 15) and ft.shape == (1, 1024, 15, 15)
    # the source stream is the first half of the grouped channels: swapping images swaps nothing else
    with torch.no_grad():
        fs2, _ = model.features(trg, src)
    assert not torch.allclose(fs2, ft)  # the streams differ after "fine-tuning"


def test_missing_unexpected_and_misshapen_keys_are_named(authors_file, tmp_path):
    _, state = authors_file
    bad = dict(state)
    del bad["learner.chm4d.weight"]
    bad["learner.extra"] = torch.zeros(1)
    torch.save(bad, tmp_path / "a.pt")
    with pytest.raises(IndexFileError, match=r"missing keys \[learner.chm4d.weight\].*unexpected keys \[learner.extra\]"):
        load_authors_checkpoint(tmp_path / "a.pt")
    bad = dict(state)
    bad["learner.conv2ds.1.weight"] = torch.zeros(256, 1024, 1, 1)
    torch.save(bad, tmp_path / "b.pt")
    with pytest.raises(IndexFileError, match=r"learner.conv2ds.1.weight \[256, 1024, 1, 1\]"):
        load_authors_checkpoint(tmp_path / "b.pt")
    bad = dict(state)
    bad["learner.chm6d.param.0"] = torch.zeros(7)
    torch.save(bad, tmp_path / "c.pt")
    with pytest.raises(IndexFileError, match="psi"):
        load_authors_checkpoint(tmp_path / "c.pt")
    (tmp_path / "d.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(IndexFileError, match="not a readable"):
        load_authors_checkpoint(tmp_path / "d.pt")
    with pytest.raises(IndexFileError, match="no weights file"):
        load_authors_checkpoint(tmp_path / "missing.pt")


def test_data_parallel_prefix_is_accepted(authors_file, tmp_path):
    _, state = authors_file
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "dp.pt")
    assert torch.equal(load_authors_checkpoint(tmp_path / "dp.pt").state_dict()["learner.chm4d.weight"], state["learner.chm4d.weight"])


def test_one_query_against_many_runs_its_stream_once_with_the_same_features(authors_file):
    model = load_authors_checkpoint(authors_file[0])
    g = torch.Generator().manual_seed(2)
    src, trg = torch.randn(1, 3, 64, 64, generator=g), torch.randn(3, 3, 64, 64, generator=g)
    with torch.no_grad():
        fs, ft = model.backbone.forward_pair(src, trg)  # stream path
        ps, pt = model.backbone.forward_pair(src.expand(3, -1, -1, -1), trg)  # grouped path
        corr_once = model(src, trg)
        corr_pairs = model(src.expand(3, -1, -1, -1).contiguous(), trg)
    assert torch.allclose(fs, ps, atol=1e-4) and torch.allclose(ft, pt, atol=1e-4)
    assert torch.allclose(corr_once, corr_pairs, atol=1e-5)


def test_non_tensor_values_int_keys_and_nan_weights_are_named(authors_file, tmp_path):
    """Issue 27: these raised AttributeError (non-tensors, int keys) or loaded and transferred NaN points."""
    _, state = authors_file
    cases = {"e.pt": (dict(state, **{"learner.chm4d.weight": [1.0, 2.0]}), r"not: learner.chm4d.weight \(list\)"),
             "f.pt": ({**state, 7: torch.zeros(1)}, "keys are parameter names"),
             "g.pt": (dict(state, **{"learner.chm4d.weight": torch.full((55,), float("nan"))}), "NaN/inf weights in learner.chm4d.weight")}
    for name, (bad, msg) in cases.items():
        torch.save(bad, tmp_path / name)
        with pytest.raises(IndexFileError, match=msg):
            load_authors_checkpoint(tmp_path / name)


def test_a_head_file_with_nan_weights_is_refused(tmp_path):
    from xcorr_chm_corr.pretrained import load_pretrained, save_head, shipped_path

    chm = load_pretrained()
    with torch.no_grad():
        chm.learner.chm4d.weight.fill_(float("nan"))
    save_head(chm, tmp_path / "nan_head.pt")
    with pytest.raises(IndexFileError, match="NaN/inf weights"):
        load_pretrained(tmp_path / "nan_head.pt")
    assert shipped_path().is_file()


def test_non_square_maps_give_an_xcorr_error():
    import xcorr_core as xc
    from xcorr_chm_corr.pretrained import load_pretrained

    with pytest.raises(xc.InputError, match="square feature maps, got 7 x 6"):
        load_pretrained().transfer(torch.rand(1, 3, 112, 96), torch.rand(1, 3, 112, 96), torch.rand(1, 5, 2))


def test_out_of_range_images_and_tiny_images_are_refused():
    """Issue 27 item 4: 0-255 floats and 1-channel images gave other answers; 8x8 images sent every point to (3.14, 3.14)."""
    import xcorr_core as xc
    from xcorr_chm_corr.pretrained import load_pretrained

    chm = load_pretrained()
    pts = torch.rand(1, 4, 2) * 100
    for img, msg in ((torch.rand(1, 3, 112, 112) * 255, "divide by 255"), (torch.rand(1, 1, 112, 112), "1 channel"),
                     (torch.rand(1, 3, 8, 8), "at least 2 x 2")):
        with pytest.raises(xc.InputError, match=msg):
            chm.transfer(img, img.clone(), pts if img.shape[-1] > 8 else torch.rand(1, 4, 2) * 8)
