"""The psi / iso / full weight sharing: counts, the authors' parameter order, and invariances."""
import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from xcorr_chm_corr.kernels import assemble_4d, assemble_6d, kernel_groups, scale_groups


def authors_order(k: int, ktype: str) -> list[int]:
    """A literal walk as the authors' KernelGenerator: row-major entries, string keys, dict order."""
    c = k // 2
    keys: dict[str, int] = {}
    out = []
    for si, sj, ti, tj in itertools.product(range(k), repeat=4):
        d_tail = (si - c) ** 2 + (sj - c) ** 2
        d_head = (ti - c) ** 2 + (tj - c) ** 2
        d_off = (si - ti) ** 2 + (sj - tj) ** 2
        key = f"{d_off}" if ktype == "iso" else f"{max(d_head, d_tail)}_{min(d_head, d_tail)}_{d_off}"
        out.append(keys.setdefault(key, len(keys)))
    return out


@pytest.mark.parametrize("k,ktype,count", [(5, "psi", 55), (3, "psi", 11), (7, "psi", 179), (5, "iso", 15), (5, "full", 625)])
def test_group_counts_and_authors_order(k, ktype, count):
    group, n = kernel_groups(k, ktype)
    assert n == count
    if ktype != "full":
        assert group.tolist() == authors_order(k, ktype)


def _kernel(seed: int, ktype: str = "psi") -> torch.Tensor:
    n = kernel_groups(5, ktype)[1]
    return assemble_4d(torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), 5, ktype)


@given(st.integers(0, 10_000), st.sampled_from(["psi", "iso"]))
def test_psi_kernel_invariances(seed, ktype):
    K = _kernel(seed, ktype)
    # swapping source and target offsets
    assert torch.equal(K, K.permute(2, 3, 0, 1))
    # rotating both offsets by 90 degrees: (i, j) -> (j, 4 - i)
    assert torch.equal(K, K.transpose(0, 1).flip(1).transpose(2, 3).flip(3))
    # reflections of both offsets (rows, columns) and the transpose of both
    assert torch.equal(K, K.flip(0).flip(2))
    assert torch.equal(K, K.flip(1).flip(3))
    assert torch.equal(K, K.permute(1, 0, 3, 2))


@given(st.integers(0, 10_000))
def test_psi_kernel_is_not_fully_symmetric(seed):
    # a psi kernel still tells apart offsets that the invariances do not relate
    K = _kernel(seed)
    assert not torch.equal(K[2, 2, 2, 2].expand(5, 5, 5, 5), K)


def test_entry_is_weight_over_group_size():
    group, n = kernel_groups(5, "psi")
    w = torch.arange(1.0, n + 1)
    K = assemble_4d(w, 5, "psi").flatten()
    size = torch.bincount(group)
    assert torch.allclose(K, w[group] / size[group])
    assert torch.allclose(K.view(-1).new_zeros(n).index_add_(0, group, K), w)  # each weight spread over its entries


def test_6d_scale_groups_and_sizes():
    n = kernel_groups(5, "psi")[1]
    ws = [torch.full((n,), float(i + 1)) * torch.bincount(kernel_groups(5, "psi")[0]) for i in range(4)]
    K6 = assemble_6d(ws, 5, "psi")
    for g, members in enumerate(scale_groups("psi")):
        for m in members:
            assert torch.allclose(K6.view(9, -1)[m], torch.full((625,), (g + 1) / len(members)))
    assert torch.equal(K6, K6.flip(0).flip(1)) and torch.equal(K6, K6.transpose(0, 1))
    with pytest.raises(ValueError, match="4 weight vectors"):
        assemble_6d(ws[:3], 5, "psi")
