"""CHM-Corr scoring on hand-made cases: pairing (correct and the authors' transposed), masks, scores."""
import pytest
import torch

from xcorr_core.errors import InputError
from xcorr_chm_corr.scoring import cc_mask, chm_corr_scores, grid_points, keypoint_mask, paired_cells, paired_cosine


def centre(k: int, n: int) -> float:
    return (k + 0.5) * 2 / n - 1


def test_grid_points_are_row_major_cell_centres():
    pts = grid_points(2, 3)
    want = torch.tensor([[centre(c, 3), centre(r, 2)] for r in range(2) for c in range(3)])
    assert torch.allclose(pts, want)
    a = grid_points(7, 7, "authors")
    assert a[0].tolist() == pytest.approx([-0.85, -0.85]) and a[1, 0] == pytest.approx(-0.85 + 1.7 / 6)


def test_pairing_correct_and_authors_transposed():
    n = 3
    # every point of cell (r, c) lands in cell (r, (c + 1) % 3) of the candidate
    moved = torch.tensor([[centre((c + 1) % n, n), centre(r, n)] for r in range(n) for c in range(n)])
    right = paired_cells(moved, n, n)
    assert right.tolist() == [r * n + (c + 1) % n for r in range(n) for c in range(n)]
    # the authors: cell (r, c) takes the point of cell (c, r), which lands in (c, (r + 1) % 3), read as (row=x, col=y)
    transposed = paired_cells(moved, n, n, authors_transpose=True)
    assert transposed.tolist() == [((r + 1) % n) * n + c for r in range(n) for c in range(n)]


def test_points_outside_clamp_to_the_border_cells():
    moved = torch.tensor([[-1.3, 1.0], [1.0, -1.0]] + [[0.0, 0.0]] * 2)
    assert paired_cells(moved, 2, 2).tolist() == [2, 1, 3, 3]


def test_cc_mask_by_hand():
    q = torch.tensor([[[1.0, 2.0, 3.0]]])  # [C=1, h=1, w=3]
    g = torch.full((1, 1, 1, 3), 2.0)  # mean 2 -> cc = [2, 4, 6] -> normalised [0, 0.5, 1]
    assert cc_mask(q, g, 0.55).tolist() == [[0.0, 0.0, 1.0]]
    assert cc_mask(q, g, 0.5).tolist() == [[0.0, 1.0, 1.0]]


def test_scores_by_hand():
    # C = 2, a 1 x 3 grid; query cells e0, e1, (1, 1); the candidate's cells e1, e0, e0
    q = torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 1.0, 1.0]]])
    g = torch.tensor([[[[0.0, 1.0, 1.0]], [[1.0, 0.0, 0.0]]]])
    cells = torch.tensor([[1, 0, 1]])  # cell 0 -> e0 (cos 1), cell 1 -> e1 (cos 1), cell 2 -> e0 (cos 1/sqrt 2)
    cos = paired_cosine(q, g, cells)
    assert cos[0].tolist() == pytest.approx([1.0, 1.0, 2**-0.5])
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    score, pairs, w = chm_corr_scores(q, g, cells, mask, pairs=2)
    assert score.tolist() == pytest.approx([(1 + 2**-0.5) / 2])
    assert pairs.tolist() == [[[0, 1], [2, 1]]] and w[0].tolist() == pytest.approx([1.0, 2**-0.5])
    # L larger than the passing cells: masked cells count as zeros (the authors' top-5 of the masked map)
    score5, _, _ = chm_corr_scores(q, g, cells, mask, pairs=5)
    assert score5.tolist() == pytest.approx([(1 + 2**-0.5 + 0) / 3])
    # CHM-Corr+: mean over every cell
    plus, _, _ = chm_corr_scores(q, g, cells, mask, pairs=2, reduce="all")
    assert plus.tolist() == pytest.approx([(1 + 2**-0.5) / 3])


def test_keypoint_mask_drops_hidden_and_off_image_points():
    kps = torch.tensor([[10.0, 10.0, 1], [111.0, 50.0, 1], [60.0, 60.0, 0], [-3.0, 5.0, 1], [5.0, 200.0, 1]])
    m = keypoint_mask(kps, (112, 112), (7, 7))
    assert m.nonzero().flatten().tolist() == [0, 3 * 7 + 6]
    assert keypoint_mask(kps, (112, 112), (7, 7), parts=[1]).nonzero().flatten().tolist() == [27]


def test_bad_inputs():
    with pytest.raises(InputError):
        paired_cells(torch.zeros(5, 2), 2, 2)
    with pytest.raises(InputError):
        grid_points(3, 3, "other")  # type: ignore[arg-type]
