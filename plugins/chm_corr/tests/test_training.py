"""Training pieces: loss and PCK against direct formulas, pair drawing, baselines by hand."""
import pytest
import torch

from xcorr_core.errors import InputError
from xcorr_chm_corr.training import baseline_transfer, keypoint_pairs, pck, transfer_loss


def test_transfer_loss_is_the_authors_objective():
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [9.0, 9.0]], [[0.5, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    truth = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    valid = torch.tensor([[True, True, False], [True, False, False]])
    # pair 0: (1 + 1) / 2 = 1; pair 1: 0.25 / 1 -> mean 0.625
    assert float(transfer_loss(pred, truth, valid)) == pytest.approx(0.625)
    with pytest.raises(InputError):
        transfer_loss(pred, truth, torch.zeros(2, 3, dtype=torch.bool))


def test_pck_by_hand():
    pred = torch.tensor([[[0.0, 0.0], [5.0, 0.0], [0.0, 12.0]]])
    truth = torch.zeros(1, 3, 2)
    valid = torch.tensor([[True, True, True]])
    out = pck(pred, truth, valid, torch.tensor([100.0]))
    assert out[0.05].tolist() == pytest.approx([2 / 3]) and out[0.1].tolist() == pytest.approx([2 / 3])
    assert out[0.15].tolist() == pytest.approx([1.0])


def test_keypoint_pairs_respect_the_rules():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    genus = labels // 2
    kps = torch.ones(8, 4, 3)
    kps[7, :, 2] = 0  # no visible keypoint: never drawn
    pairs = keypoint_pairs(labels, genus, kps, 40, generator=g)
    a, b = pairs[:, 0], pairs[:, 1]
    assert pairs.shape == (40, 2) and bool((a != b).all()) and not bool((pairs == 7).any())
    assert int((labels[a] == labels[b]).sum()) == 20 and bool((genus[a] == genus[b]).all())
    with pytest.raises(InputError):
        keypoint_pairs(labels, torch.arange(8), kps, 4, mode="genus", generator=g)


def test_argmax_baseline_by_hand():
    # source cell (0, 0) is most similar to target cell (1, 1) of a 2 x 2 map of a 20 px image
    src = torch.zeros(1, 2, 2, 2)
    trg = torch.zeros(1, 2, 2, 2)
    src[0, 0, 0, 0] = 1
    trg[0, 0, 1, 1] = 1
    src[0, 1, 1, 1] = 1
    trg[0, 1, 0, 0] = 1
    pts = torch.tensor([[[3.0, 4.0], [16.0, 15.0]]])
    out = baseline_transfer(src, trg, pts, (20, 20), "argmax")
    assert out.tolist() == [[[13.0, 14.0], [6.0, 5.0]]]
    mnn = baseline_transfer(src, trg, pts, (20, 20), "mutual_nn")
    assert mnn.shape == (1, 2, 2) and bool(torch.isfinite(mnn).all())
