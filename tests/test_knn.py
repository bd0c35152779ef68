"""kNN baseline: vote, tie rules, confidence, the paper's 5-neighbour explanation."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import xcorr_core as xc
from xcorr_core.knn import support_neighbours

label_rows = st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=20), min_size=1, max_size=6).filter(
    lambda rows: len({len(r) for r in rows}) == 1)


def _reference_vote(row: list[int]) -> tuple[int, int]:
    counts = {c: row.count(c) for c in set(row)}
    best = max(counts.values())
    return min(c for c, v in counts.items() if v == best), best


@given(label_rows, st.randoms())
def test_vote_matches_reference_and_is_permutation_invariant(rows, rnd) -> None:
    labels = torch.tensor(rows)
    pred, votes = xc.majority_vote(labels)
    for r, p, v in zip(rows, pred.tolist(), votes.tolist()):
        assert (p, v) == _reference_vote(r)
    perm = list(range(labels.shape[1]))
    rnd.shuffle(perm)
    p2, v2 = xc.majority_vote(labels[:, perm])
    assert torch.equal(pred, p2) and torch.equal(votes, v2)


def test_tie_rules_by_hand() -> None:
    labels = torch.tensor([[3, 1, 1, 3, 2], [0, 0, 4, 4, 4]])
    assert xc.majority_vote(labels)[0].tolist() == [1, 4]  # lowest label among tied 1 and 3
    assert xc.majority_vote(labels, tie_break="nearest")[0].tolist() == [3, 4]  # 3 ranks first
    assert xc.majority_vote(labels)[1].tolist() == [2, 3]


def test_vote_errors() -> None:
    with pytest.raises(xc.InputError, match=">= 0"):
        xc.majority_vote(torch.tensor([[1, -1]]))
    with pytest.raises(xc.InputError, match="integer"):
        xc.majority_vote(torch.tensor([[1.0, 2.0]]))
    with pytest.raises(xc.InputError, match="num_classes"):
        xc.majority_vote(torch.tensor([[5]]), num_classes=3)


def test_support_neighbours_up_to_five() -> None:
    labels = torch.tensor([[2, 1, 2, 2, 0, 2, 2, 2, 2], [1, 0, 0, 0, 0, 0, 0, 1, 0]])
    ranks, valid = support_neighbours(labels, torch.tensor([2, 1]), top=5)
    assert ranks[0].tolist() == [0, 2, 3, 5, 6] and valid[0].all()
    assert ranks[1][valid[1]].tolist() == [0, 7]  # only 2 of the predicted class: show just those


def test_classifier_end_to_end() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g) * 5
    labels = torch.arange(60) % 3
    gallery = centres[labels] + torch.randn(60, 16, generator=g)
    idx = xc.GalleryIndex(16)
    idx.add(gallery, labels, ids=torch.arange(60) + 1000)
    knn = xc.KNNClassifier(idx, k=20)
    queries = centres + 0.1 * torch.randn(3, 16, generator=g)
    out = knn.predict(queries)
    assert out.predictions.tolist() == [0, 1, 2]
    assert torch.allclose(out.confidences, out.votes.float() / 20)
    exp = knn.explain(out, 1, query_id=1)
    assert exp.support_ids.numel() == 5 and bool((idx.labels[exp.support_ids - 1000] == 1).all())
    assert exp.support_ranks.tolist() == sorted(exp.support_ranks.tolist())
    with pytest.raises(xc.InputError, match="k=61"):
        xc.KNNClassifier(idx, k=61)
    unlabelled = xc.GalleryIndex(16)
    unlabelled.add(gallery)
    with pytest.raises(xc.InputError, match="label"):
        xc.KNNClassifier(unlabelled)
