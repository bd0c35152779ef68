"""The exact scorers of one search step for two families of g and for any g (used by
`search.search_counterfactual`; the fourth path, residual blocks scored on the window an edit can
reach, is `local._Local`):

- `_ClosedForm`, g = global average pooling + linear: an edit i <- j changes the logits by
  ``W (d_j - q_i) / hw``, so every candidate of a step costs one gather and a log-sum-exp;
- `_FirstLinear`, g starting with a linear layer on the flattened map (VGG's classifier): only the
  ``d`` inputs of the first layer that an edit touches are multiplied per candidate;
- `_Generic`, any g: candidate feature maps built with one indexed write per chunk and run through g.

Each keeps the current (edited) query features and answers ``score(ci, cj)``, the target class's
log probability per candidate (query cell, distractor cell), and ``apply(i, j)``, which makes an
edit. Depends on torch.
"""
from __future__ import annotations

import torch
from torch import nn

__all__: list[str] = []  # internal to the search


class _ClosedForm:
    """Scores for g = pooling + linear. Keeps the current logits ``z`` and the per-cell logit
    contributions ``Q W^T / hw``; an edit i <- j updates both in O(C).

    The log-sum-exp over classes of every (query cell i, distractor cell j) pair factorises:
    ``sum_c exp(a_ic + b_jc) = (exp(a) exp(b)^T)_ij`` with ``a = z - wq`` `[hw, C]` and ``b = wd``
    `[N, C]`, so one `[hw, C] x [C, N]` product in float64 (max-shifted) scores all ``hw * N`` pairs
    at once; ``exp(b)`` is fixed for the whole search. Where that product underflows, the pairs are
    scored directly (`_score_direct`)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, cur: torch.Tensor, dcells: torch.Tensor, target: int,
                 chunk: int) -> None:
        w = weight.to(dcells.dtype)
        hw = cur.shape[0]
        self.wd = dcells @ w.T / hw  # [N, C], fixed for the whole search
        self.wq = cur @ w.T / hw  # [hw, C]
        b = bias.to(dcells.dtype) if bias is not None else 0.0
        self.z = self.wq.sum(0) + b  # current logits [C]
        self.target, self.chunk = target, chunk
        wd64 = self.wd.double()
        self._mb = wd64.amax(dim=1)  # [N]
        self._eb_t = torch.exp(wd64 - self._mb[:, None]).T.contiguous()  # [C, N]
        self._bt = wd64[:, target]  # [N]

    def score(self, ci: torch.Tensor, cj: torch.Tensor) -> torch.Tensor:
        return self.score_fixed(ci * self._eb_t.shape[1] + cj, ci, cj)

    def score_fixed(self, flat: torch.Tensor | None, ci: torch.Tensor, cj: torch.Tensor) -> torch.Tensor:
        """Scores of the candidates (``ci``, ``cj``) at flat indices ``flat`` (``i * N + j``; None = all
        ``hw * N`` pairs, row-major); only the candidates' entries are gathered before the log."""
        a = self.z.double() - self.wq.double()  # [hw, C]
        ma = a.amax(dim=1)
        s = torch.exp(a - ma[:, None]) @ self._eb_t  # [hw, N]
        if not bool(s.amin() > 0):  # underflow (logit ranges beyond ~700): the direct path
            return self._score_direct(ci, cj)
        row, col = a[:, self.target] - ma, self._bt - self._mb
        if flat is None:
            lp = row[:, None] + col[None, :] - torch.log(s)
            return lp.flatten().to(self.z.dtype)
        return (row.take(ci) + col.take(cj) - torch.log(s.flatten().take(flat))).to(self.z.dtype)

    def _score_direct(self, ci: torch.Tensor, cj: torch.Tensor) -> torch.Tensor:
        """Each pair's logits built and reduced, in chunks of ``chunk`` pairs (the reference)."""
        out = torch.empty(len(ci), dtype=self.z.dtype, device=self.z.device)
        for s in range(0, len(ci), self.chunk):
            z = self.z + self.wd[cj[s:s + self.chunk]] - self.wq[ci[s:s + self.chunk]]
            out[s:s + self.chunk] = z[:, self.target] - torch.logsumexp(z, dim=1)
        return out

    def apply(self, i: int, j: int) -> torch.Tensor:
        self.z = self.z + self.wd[j] - self.wq[i]
        self.wq[i] = self.wd[j]
        return self.z


class _FirstLinear:
    """Scores for g = rest(W1 vec(x) + b1), W1 given as per-cell blocks `[hw, d, out]`. Keeps the first
    layer's current output ``pre`` and each cell's contribution ``q_p W1_p``; candidates must be
    sorted by query cell."""

    def __init__(self, blocks: torch.Tensor, b1: torch.Tensor | None, rest: nn.Module, cur: torch.Tensor, dcells: torch.Tensor,
                 target: int, chunk: int) -> None:
        self.blocks = blocks.to(cur.dtype)
        self.cq = torch.bmm(cur[:, None, :], self.blocks)[:, 0]  # [hw, out]
        self.pre = self.cq.sum(0) + (b1.to(cur.dtype) if b1 is not None else 0.0)
        self.rest, self.dcells, self.target, self.chunk = rest, dcells, target, chunk
        self.z = rest(self.pre[None])[0]

    def score(self, ci: torch.Tensor, cj: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(ci), dtype=self.pre.dtype, device=self.pre.device)
        for s in range(0, len(ci), self.chunk):
            i, j = ci[s:s + self.chunk], cj[s:s + self.chunk]
            a = torch.empty(len(i), self.pre.shape[0], dtype=self.pre.dtype, device=self.pre.device)
            cells, counts = torch.unique_consecutive(i, return_counts=True)
            start = 0
            for p, c in zip(cells.tolist(), counts.tolist()):  # at most h*w runs: one product per query cell
                torch.mm(self.dcells[j[start:start + c]], self.blocks[p], out=a[start:start + c])
                a[start:start + c] -= self.cq[p]
                start += c
            a += self.pre
            out[s:s + self.chunk] = torch.log_softmax(self.rest(a).float(), dim=1)[:, self.target].to(out.dtype)
        return out

    def apply(self, i: int, j: int) -> torch.Tensor:
        new = self.dcells[j] @ self.blocks[i]
        self.pre = self.pre + new - self.cq[i]
        self.cq[i] = new
        self.z = self.rest(self.pre[None])[0]
        return self.z


class _Generic:
    """Scores for any g: candidate maps built with one indexed write per chunk and run through g."""

    def __init__(self, g: nn.Module, cur: torch.Tensor, dcells: torch.Tensor, shape: tuple[int, int, int], target: int,
                 chunk: int) -> None:
        self.g, self.cur, self.dcells, self.shape, self.target, self.chunk = g, cur, dcells, shape, target, chunk
        self.z = self._run(cur[None])[0]

    def _run(self, cells: torch.Tensor) -> torch.Tensor:  # [B, hw, d] -> logits [B, C]
        d, h, w = self.shape
        return self.g(cells.transpose(1, 2).reshape(-1, d, h, w))

    def score(self, ci: torch.Tensor, cj: torch.Tensor) -> torch.Tensor:
        cur = self.cur
        out = torch.empty(len(ci), dtype=cur.dtype, device=cur.device)
        for s in range(0, len(ci), self.chunk):
            i, j = ci[s:s + self.chunk], cj[s:s + self.chunk]
            x = cur.expand(len(i), -1, -1).clone()
            x[torch.arange(len(i), device=cur.device), i] = self.dcells[j]  # one indexed write builds the whole chunk
            out[s:s + self.chunk] = torch.log_softmax(self._run(x).float(), dim=1)[:, self.target].to(out.dtype)
        return out

    def apply(self, i: int, j: int) -> torch.Tensor:
        self.cur[i] = self.dcells[j]
        self.z = self._run(self.cur[None])[0]
        return self.z
