"""ProtoKNN's losses, each a small module usable in your own training loop.

* `MarginLoss` — the task loss on profiles (Wu et al. 2017), batch-hard: for each anchor the
  farthest same-class sample and the nearest other-class sample,
  ``([d_ap - beta_y + m]_+ + [beta_y - d_an + m]_+)`` summed over anchors and divided by the
  number of non-zero terms; ``beta_y`` learnable per class. Also the default auxiliary loss.
* `ProxyAnchorLoss` — the auxiliary loss option (Kim et al. 2020).
* `gumbel_affiliation` / `class_affiliation` — which prototypes each sample and class holds:
  E(a, i) counts, over the other samples b, Gumbel-max draws of argmax_j (s_a,j - s_b,j) / tau;
  the class mean Ebar, the de-biased Ehat (each prototype's mass shared equally across the
  batch's classes) and the affiliation P(y, i) (rows sum to 1).
* `sinkhorn_assignment` — per batch class y, the entropic transport T^y between the class's
  samples (row sums 1) and the prototypes (column sums N_y P(y, i)) on the cost
  C_a,i = min_z |z - p_i|^2, all classes in one log-domain solve (no loop over classes).
* `ClusterLoss` — sum_y sum_a,i T_a,i C'_a,i with C' = C - mean_z |z - p_i|^2 (the "maximise
  the gap" form) and T detached; ``mode`` gives the paper's ablation rows.

No Python loop over classes, samples or prototypes. Depends on torch and the core's errors.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from xcorr_core.errors import InputError
from xcorr_core.validation import check_tensor

__all__ = ["MarginLoss", "ProxyAnchorLoss", "gumbel_affiliation", "class_affiliation", "sinkhorn_assignment", "ClusterLoss",
           "ClusterMode", "patch_costs", "check_batch", "check_labels"]

ClusterMode = Literal["most_similar", "sampling", "debias", "assignment", "full"]


def check_labels(labels: torch.Tensor, n: int | None = None, num_classes: int | None = None, name: str = "labels") -> None:
    """Class ids: an integer tensor `[n]` of values >= 0 (and < ``num_classes`` when given)."""
    check_tensor(name, labels, ndim=1, floating=False)
    if labels.dtype == torch.bool:
        raise InputError(f"{name} must be integer class ids, got bool")
    if n is not None and labels.shape[0] != n:
        raise InputError(f"{name} must be [{n}], got {list(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or (num_classes is not None and int(labels.max()) >= num_classes)):
        raise InputError(f"{name} must lie in [0, {num_classes if num_classes is not None else 'inf'}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")


def _values(name: str, t: torch.Tensor, ndim: int | None = None) -> None:
    check_tensor(name, t, ndim=ndim, floating=True, finite=True, non_empty=True)


def _finite_result(value: torch.Tensor, what: str) -> torch.Tensor:
    """``value``, or `InputError` when finite inputs overflowed float range (e.g. embeddings of 1e30)."""
    if not bool(torch.isfinite(value).all()):
        raise InputError(f"{what} is not finite although its inputs are: their magnitudes overflow {value.dtype} "
                         "(squared distances of values near 1e19 or more); scale the inputs down")
    return value


def check_batch(labels: torch.Tensor, n: int) -> None:
    """A ProtoKNN batch needs labels `[n]` with at least two classes and a pair in some class."""
    check_labels(labels, n)
    if labels.unique().numel() < 2:
        raise InputError("a ProtoKNN batch needs at least two classes (negatives and de-biasing compare classes)")


def _distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances `[B, B]`, sqrt(sum + 1e-8) so that the gradient at 0 is finite."""
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1).add(1e-8).sqrt()


class MarginLoss(nn.Module):
    """Margin loss with batch-hard mining and a learnable boundary per class.

    Args:
        num_classes: classes (one beta each).
        margin: m (assumption: 0.2, Roth et al.'s default).
        beta_init: initial beta (assumption: 1.2).
    """

    def __init__(self, num_classes: int, margin: float = 0.2, beta_init: float = 1.2) -> None:
        super().__init__()
        self.margin = margin
        self.beta = nn.Parameter(torch.full((num_classes,), float(beta_init)))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``x`` `[B, D]` embeddings, ``labels`` `[B]` class ids < num_classes."""
        _values("x", x, 2)
        check_batch(labels, x.shape[0])
        check_labels(labels, num_classes=self.beta.shape[0])
        d = _distances(x)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
        pos_mask, neg_mask = same & ~eye, ~same
        has_pos = pos_mask.any(1)
        d_ap = torch.where(pos_mask, d, torch.full_like(d, -1.0)).amax(1)  # hardest positive
        d_an = torch.where(neg_mask, d, torch.full_like(d, float("inf"))).amin(1)  # hardest negative
        beta = self.beta[labels]
        terms = torch.cat([F.relu(d_ap - beta + self.margin)[has_pos], F.relu(beta - d_an + self.margin)])
        nonzero = int((terms > 0).sum())
        return _finite_result(terms.sum() / nonzero if nonzero else terms.sum(), "the margin loss")


class ProxyAnchorLoss(nn.Module):
    """Proxy-Anchor loss (one proxy per class; alpha 32, delta 0.1) on L2-normalised embeddings."""

    def __init__(self, num_classes: int, dim: int, alpha: float = 32.0, delta: float = 0.1) -> None:
        super().__init__()
        self.alpha, self.delta = alpha, delta
        self.proxies = nn.Parameter(torch.randn(num_classes, dim) * (2.0 / dim) ** 0.5)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``x`` `[B, D]` embeddings, ``labels`` `[B]` class ids < num_classes."""
        _values("x", x, 2)
        check_batch(labels, x.shape[0])
        check_labels(labels, num_classes=self.proxies.shape[0])
        cos = F.normalize(x, dim=1) @ F.normalize(self.proxies, dim=1).T  # [B, C]
        pos = F.one_hot(labels, self.proxies.shape[0]).bool()
        with_pos = pos.any(0)
        pos_term = torch.where(pos, torch.exp(-self.alpha * (cos - self.delta)), torch.zeros_like(cos)).sum(0)
        neg_term = torch.where(~pos, torch.exp(self.alpha * (cos + self.delta)), torch.zeros_like(cos)).sum(0)
        return torch.log1p(pos_term[with_pos]).sum() / with_pos.sum() + torch.log1p(neg_term).sum() / self.proxies.shape[0]


def gumbel_affiliation(profiles: torch.Tensor, tau: float = 0.05, *, gumbel: torch.Tensor | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """E `[B, M]`: for each sample a, how many of the other samples b drew prototype i by Gumbel-max
    over (s_a - s_b) / tau. ``gumbel`` `[B, B, M]` fixes the noise (tests); otherwise it is drawn."""
    _values("profiles", profiles, 2)
    if gumbel is not None:
        _values("gumbel", gumbel)
    b, m = profiles.shape
    with torch.no_grad():
        if gumbel is None:
            u = torch.rand(b, b, m, generator=generator, device=profiles.device if generator is None else "cpu").to(profiles.device)
            gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1 - 1e-7)))
        pick = ((profiles[:, None, :] - profiles[None, :, :]) / tau + gumbel).argmax(-1)  # [B, B]
        hits = F.one_hot(pick, m).to(profiles.dtype)  # [B, B, M]
        hits = hits * (~torch.eye(b, dtype=torch.bool, device=profiles.device))[..., None]
        return hits.sum(1)


def _safe_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b > 0, a / b.clamp_min(1e-30), torch.zeros_like(a))


def class_affiliation(E: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(classes [Y], Ebar [Y, M], Ehat [Y, M], P [Y, M])`` for the Y classes present in the batch.

    Ebar = class mean of E; Ehat = Ebar / sum over classes of Ebar (0/0 -> 0); P = Ehat
    normalised over prototypes (a class whose Ehat is all 0 gets a uniform P).
    """
    _values("E", E, 2)
    if bool((E < 0).any()):
        raise InputError("E counts Gumbel draws: it must be >= 0")
    check_labels(labels, E.shape[0])
    classes, inv = labels.unique(return_inverse=True)
    onehot = F.one_hot(inv, classes.numel()).to(E.dtype)  # [B, Y]
    ebar = (onehot.T @ E) / onehot.sum(0)[:, None]
    ehat = _safe_div(ebar, ebar.sum(0, keepdim=True))
    rows = ehat.sum(1, keepdim=True)
    p = torch.where(rows > 0, ehat / rows.clamp_min(1e-30), torch.full_like(ehat, 1.0 / E.shape[1]))
    return classes, ebar, ehat, p


def patch_costs(cosines: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(C [B, M], C_hat [B, M])`` from patch cosines `[B, M, P]` of unit patches and prototypes:
    C = min_z |z - p|^2 = 2 - 2 max cos, C_hat = C - mean_z |z - p|^2 = 2 (mean cos - max cos)."""
    _values("cosines", cosines, 3)
    c = 2 - 2 * cosines.amax(-1)
    return c, c - (2 - 2 * cosines.mean(-1))


def sinkhorn_assignment(cost: torch.Tensor, labels: torch.Tensor, affiliation: torch.Tensor, classes: torch.Tensor, *,
                        eps: float = 0.05, entropy: Literal["kernel", "literal"] = "kernel", max_iter: int = 100,
                        tol: float = 1e-3) -> torch.Tensor:
    """T `[B, M]` (row a holds T^{y_a}_a): per class y, rows = its samples with mass 1 each, columns
    = prototypes with mass N_y P(y, i); entropic OT on ``cost`` `[B, M]`.

    ``entropy="kernel"`` (default): kernel exp(-C / eps), eps = 0.05 (lambda read as the
    regularisation weight). ``"literal"``: Eq. 10 as printed, weight 1 / lambda = 20, i.e.
    kernel exp(-0.05 C). Log domain, all classes at once (per-class column sums by a scatter
    log-sum-exp); stops when the row potentials change by less than ``tol`` (the row marginals are
    then within about ``tol`` of 1; the columns are exact) or after ``max_iter`` iterations. No gradient.
    """
    _values("cost", cost, 2)
    check_labels(labels, cost.shape[0])
    check_labels(classes, name="classes")
    _values("affiliation", affiliation, 2)
    if tuple(affiliation.shape) != (classes.numel(), cost.shape[1]) or bool((affiliation < 0).any()):
        raise InputError(f"affiliation must be [Y={classes.numel()}, M={cost.shape[1]}] with values >= 0, got {list(affiliation.shape)}")
    if not bool(torch.isin(labels, classes).all()):
        raise InputError("every label must be one of classes")
    with torch.no_grad():
        reg = eps if entropy == "kernel" else 1.0 / eps
        inv = (labels[:, None] == classes[None, :]).float().argmax(1)  # class index of each sample
        y = classes.numel()
        n_y = torch.bincount(inv, minlength=y).to(cost.dtype)  # [Y]
        log_k = -cost / reg  # [B, M]
        log_col = torch.log((n_y[:, None] * affiliation).clamp_min(1e-30))  # [Y, M]
        log_col = torch.where(affiliation > 0, log_col, torch.full_like(log_col, float("-inf")))
        f = -torch.logsumexp(log_k, dim=1)  # [B] row potentials (log), g = 0
        g = torch.zeros_like(affiliation)
        for _ in range(max_iter):
            col = _class_logsumexp(log_k + f[:, None], inv, y)  # [Y, M]: column sums over each class's rows
            g = torch.where(torch.isfinite(log_col), log_col - col, torch.full_like(col, float("-inf")))
            f_new = -torch.logsumexp(log_k + g[inv], dim=1)  # rows sum to 1
            change = float((f_new - f).abs().max())
            f = f_new
            if change < tol:
                break
        return torch.exp(log_k + f[:, None] + g[inv])


def _class_logsumexp(x: torch.Tensor, inv: torch.Tensor, y: int) -> torch.Tensor:
    """`[Y, M]` log-sum-exp of the rows of ``x`` `[B, M]` that belong to each class (``inv`` `[B]`),
    by scatter: O(B M), not O(Y B M)."""
    idx = inv[:, None].expand_as(x)
    mx = torch.full((y, x.shape[1]), float("-inf"), dtype=x.dtype, device=x.device).scatter_reduce(0, idx, x, "amax")
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    total = torch.zeros_like(mx).index_add_(0, inv, torch.exp(x - mx[inv]))
    return torch.log(total) + mx


class ClusterLoss(nn.Module):
    """ProtoKNN's cluster loss; ``mode`` selects the paper's ablation rows:

    * ``most_similar``: T = 1 at each sample's most similar prototype (cost C);
    * ``sampling``: T = Ebar(y_a) normalised (cost C);
    * ``debias``: T = Ehat(y_a) normalised, i.e. P(y_a) (cost C);
    * ``assignment``: T = the Sinkhorn transport (cost C);
    * ``full`` (default): the same T on C_hat = C - mean distance (the "maximise the gap" form).

    The loss is sum_y sum_a,i T C divided by the batch size (``reduce="mean"``; the paper's
    plain sum with ``"sum"``). T carries no gradient; it flows through the costs only.
    """

    def __init__(self, mode: ClusterMode = "full", tau: float = 0.05, eps: float = 0.05,
                 entropy: Literal["kernel", "literal"] = "kernel", reduce: Literal["mean", "sum"] = "mean",
                 max_iter: int = 100, tol: float = 1e-3) -> None:
        super().__init__()
        if mode not in ("most_similar", "sampling", "debias", "assignment", "full"):
            raise InputError(f"unknown cluster-loss mode {mode!r}")
        self.mode, self.tau, self.eps, self.entropy, self.reduce = mode, tau, eps, entropy, reduce
        self.max_iter, self.tol = max_iter, tol

    def plan(self, profiles: torch.Tensor, cosines: torch.Tensor, labels: torch.Tensor, *, gumbel: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """The detached weights T `[B, M]` of this mode."""
        _values("profiles", profiles, 2)
        _values("cosines", cosines, 3)
        check_batch(labels, profiles.shape[0])
        cost, _ = patch_costs(cosines.detach())
        if self.mode == "most_similar":
            return F.one_hot(cost.argmin(1), cost.shape[1]).to(cost.dtype)
        E = gumbel_affiliation(profiles.detach(), self.tau, gumbel=gumbel, generator=generator)
        classes, ebar, ehat, p = class_affiliation(E, labels)
        inv = (labels[:, None] == classes[None, :]).float().argmax(1)
        if self.mode == "sampling":
            rows = ebar.sum(1, keepdim=True)
            return torch.where(rows > 0, ebar / rows.clamp_min(1e-30), torch.full_like(ebar, 1.0 / ebar.shape[1]))[inv]
        if self.mode == "debias":
            return p[inv]
        return sinkhorn_assignment(cost, labels, p, classes, eps=self.eps, entropy=self.entropy, max_iter=self.max_iter, tol=self.tol)

    def forward(self, profiles: torch.Tensor, cosines: torch.Tensor, labels: torch.Tensor, *, gumbel: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """``profiles`` `[B, M]`, ``cosines`` `[B, M, P]` (patch x prototype cosines), ``labels`` `[B]`."""
        t = self.plan(profiles, cosines, labels, gumbel=gumbel, generator=generator)
        c, c_hat = patch_costs(cosines)
        loss = (t * (c_hat if self.mode == "full" else c)).sum()
        return loss / profiles.shape[0] if self.reduce == "mean" else loss
