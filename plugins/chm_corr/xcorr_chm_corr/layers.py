"""The CHM layers: same-padded 4D and 6D correlations with shared ('psi') kernels.

Both are plain cross-correlations with zero "same" padding and stride 1, one input and
one output channel — what the authors' ``fast4d`` / ``fast6d`` compute. The 6D one runs as a
4D FFT by default (``method="fft"``): per translation axis the transform is only as long
as the output needs (n + k // 2: the wrapped-around tail falls outside the kept window), and
the 4D transform runs as a 2D real FFT over the last two axes then a 2D complex FFT over the
first two — both choices several times faster on CPU than a full-length ``rfftn`` over four
axes. The 6D one then mixes the 9 scale channels per frequency (each output scale with the
input scales within one step). ``method="direct"`` is the reference: one ``conv3d`` with
the first translation axis of the kernel (and, for 6D, the 3 x 3 scale axes) folded into
input channels by stacking shifted copies of the input. No Python loop over kernel entries
or candidates.

Shapes: a 4D correlation is `[N, h1, w1, h2, w2]` (source y, x; target y, x); a 6D one is
`[N, 3, 3, h1, w1, h2, w2]` (source scale, target scale, then the 4D axes).
Depends on torch and `kernels`.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from xcorr_core.errors import InputError
from xcorr_core.validation import check_tensor

from .kernels import KernelType, assemble_4d, assemble_6d, kernel_groups, scale_groups

__all__ = ["correlate4d", "correlate6d", "CHM4d", "CHM6d"]


def _stack_shifts(x: torch.Tensor, dim: int, k: int) -> torch.Tensor:
    """Append an axis of the k shifted copies ``x[.., y + p - k//2, ..]`` (zeros outside) of axis ``dim``."""
    pad = [0, 0] * (x.ndim - 1 - dim) + [k // 2, k // 2]
    return F.pad(x, pad).unfold(dim, k, 1)


def _fft_lengths(sizes: tuple[int, ...], k: int) -> list[int]:
    """Transform length per axis for a same-padded correlation with a k-wide kernel: circular
    wrap-around only reaches outputs below index k // 2 + (L - n - k // 2), i.e. none we keep
    when L >= n + k // 2 (and the kernel itself must fit: L >= k)."""
    return [max(n + k // 2, k) for n in sizes]


def _spectrum4d(x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Zero-padded 4D real FFT over the last four axes (2D rfft, then 2D fft)."""
    pad: list[int] = []
    for axis, length in zip((-1, -2, -3, -4), lengths[::-1]):
        pad += [0, length - x.shape[axis]]
    return torch.fft.fftn(torch.fft.rfftn(F.pad(x, pad), dim=(-2, -1)), dim=(-4, -3))


def _inverse4d(spec: torch.Tensor, lengths: list[int], sizes: tuple[int, ...], p: int) -> torch.Tensor:
    """Inverse of `_spectrum4d`, cropped to the same-padded window ``[p, p + n)`` of each axis
    (each axis cropped as soon as it is back in space, so later transforms run on less)."""
    a, b, c, d = sizes
    y = torch.fft.ifftn(spec, dim=(-4, -3))[..., p:p + a, p:p + b, :, :]
    y = torch.fft.ifft(y, dim=-2)[..., p:p + c, :]
    return torch.fft.irfft(y, n=lengths[3], dim=-1)[..., p:p + d]


def _check_inputs(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None, x_ndim: int, k_dims: int) -> None:
    """Floating, finite inputs of a CHM correlation: ``kernel`` k^4 (after 3 x 3 scale axes for 6D)."""
    check_tensor("x", x, ndim=x_ndim, floating=True, finite=True, non_empty=True)
    check_tensor("kernel", kernel, ndim=k_dims + (2 if x_ndim == 7 else 0), floating=True, finite=True, non_empty=True)
    k = kernel.shape[-1]
    want = ((3, 3) if x_ndim == 7 else ()) + (k,) * k_dims
    if tuple(kernel.shape) != want:
        raise InputError(f"kernel must be {list(want)} (a k^{k_dims} kernel{' per scale pair' if x_ndim == 7 else ''}), "
                         f"got {list(kernel.shape)}")
    if bias is not None:
        check_tensor("bias", bias, floating=True, finite=True)


def correlate4d(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None = None, *,
                method: Literal["direct", "fft"] = "fft") -> torch.Tensor:
    """Same-padded 4D cross-correlation of ``x`` `[N, h1, w1, h2, w2]` with ``kernel`` `[k, k, k, k]`.

    ``fft``: zero-padded 4D FFT of the shortest exact length (a 1-in/1-out 5^4 kernel leaves
    conv3d with too little work per weight: ~5x faster on CPU at 14^4, equal to float
    rounding, ~1e-6 relative in float32). ``direct``: one conv3d over the last three axes
    with the k shifts of the first as input channels.
    """
    _check_inputs(x, kernel, bias, 5, 4)
    n, h1, w1, h2, w2 = x.shape
    k = kernel.shape[0]
    if method == "fft":
        sizes = (h1, w1, h2, w2)
        lengths = _fft_lengths(sizes, k)
        spec = _spectrum4d(x, lengths) * _spectrum4d(kernel.flip(0, 1, 2, 3), lengths)
        out = _inverse4d(spec, lengths, sizes, k // 2)
    elif method == "direct":
        cols = _stack_shifts(x, 1, k)  # [N, h1, w1, h2, w2, k]
        cols = cols.permute(0, 1, 5, 2, 3, 4).reshape(n * h1, k, w1, h2, w2)
        out = F.conv3d(cols, kernel.reshape(1, k, k, k, k), padding=k // 2).view(n, h1, w1, h2, w2)
    else:
        raise ValueError(f"method must be 'direct' or 'fft', got {method!r}")
    return out if bias is None else out + bias.view(())


def _scale_index(device: torch.device) -> torch.Tensor:
    """`[9 outputs, 9 inputs]`: flattened scale-kernel position linking output scale (oa, ob)
    to input scale (ia, ib), or 9 (a zero kernel) when they are more than one step apart."""
    o = torch.arange(9)
    oa, ob = (o // 3)[:, None], (o % 3)[:, None]
    ia, ib = (o // 3)[None, :], (o % 3)[None, :]
    ka, kb = ia - oa + 1, ib - ob + 1
    ok = (ka >= 0) & (ka <= 2) & (kb >= 0) & (kb <= 2)
    return torch.where(ok, ka * 3 + kb, torch.full_like(ka, 9)).to(device)


def correlate6d(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None = None, *,
                method: Literal["direct", "fft"] = "fft") -> torch.Tensor:
    """Same-padded 6D cross-correlation of ``x`` `[N, 3, 3, h1, w1, h2, w2]` with ``kernel``
    `[3, 3, k, k, k, k]` (scale padding 1, translation padding k // 2).

    Each output scale sums the 4D correlations of the input scales within one step (the zeros
    beyond are the scale padding). ``fft``: the 9 input scales transformed once, mixed per
    frequency by the 9 x 9 table of kernel spectra (2.3x faster than ``direct`` at 7^4 here,
    ~1e-6 relative in float32). ``direct``: the 9 input scales x k shifts of the source-y axis
    become 9k conv3d input channels and the 9 output scales its output channels.
    """
    _check_inputs(x, kernel, bias, 7, 4)
    n, sa, sb, h1, w1, h2, w2 = x.shape
    if (sa, sb) != (3, 3) or kernel.shape[:2] != (3, 3):
        raise InputError(f"6D correlation needs 3 x 3 scales, got input {list(x.shape)} and kernel {list(kernel.shape)}")
    k = kernel.shape[2]
    link = _scale_index(x.device)  # [9 out, 9 in] kernel position, 9 = none
    if method == "fft":
        sizes = (h1, w1, h2, w2)
        lengths = _fft_lengths(sizes, k)
        xs = _spectrum4d(x.reshape(n, 9, h1, w1, h2, w2), lengths)  # [N, 9, ...freq]
        ks = _spectrum4d(kernel.reshape(9, k, k, k, k).flip(1, 2, 3, 4), lengths)  # [9, ...freq]
        mixed = torch.zeros_like(xs)
        for o, i in (link < 9).nonzero().tolist():  # the 49 linked (output, input) scale pairs
            mixed[:, o].addcmul_(xs[:, i], ks[int(link[o, i])])
        out = _inverse4d(mixed, lengths, sizes, k // 2).reshape(n, 3, 3, h1, w1, h2, w2)
    elif method == "direct":
        k9 = torch.cat([kernel.reshape(9, k, k, k, k), kernel.new_zeros(1, k, k, k, k)])  # index 9 = zero
        weight = k9[link].reshape(9, 9 * k, k, k, k)  # [9 out, 9 in x k (source y), k, k, k]
        cols = _stack_shifts(x.reshape(n, 9, h1, w1, h2, w2), 2, k)  # [N, 9, h1, w1, h2, w2, k]
        cols = cols.permute(0, 2, 1, 6, 3, 4, 5).reshape(n * h1, 9 * k, w1, h2, w2)
        out = F.conv3d(cols, weight, padding=k // 2)  # [N*h1, 9, w1, h2, w2]
        out = out.view(n, h1, 3, 3, w1, h2, w2).permute(0, 2, 3, 1, 4, 5, 6)
    else:
        raise ValueError(f"method must be 'direct' or 'fft', got {method!r}")
    return out if bias is None else out + bias.view(())


class CHM4d(nn.Module):
    """4D convolutional Hough matching layer (1 channel in and out, shared kernel, bias).

    Parameters are named as in the authors' code (``weight`` `[n_groups]`, ``bias`` `[1]`).
    Init: kernel entries about |N(0, 1)| x 1e-3, bias U(+-1/sqrt(k^4)).
    """

    def __init__(self, ksize: int = 5, ktype: KernelType = "psi", bias: bool = True,
                 method: Literal["direct", "fft"] = "fft") -> None:
        super().__init__()
        self.ksize, self.ktype, self.method = ksize, ktype, method
        _, n = kernel_groups(ksize, ktype)
        group, _ = kernel_groups(ksize, ktype)
        size = torch.bincount(group, minlength=n).float()
        self.weight = nn.Parameter(torch.randn(n).abs() * 1e-3 * size)  # entry = weight / size
        bound = 1 / math.sqrt(ksize**4)
        self.bias = nn.Parameter(torch.empty(1).uniform_(-bound, bound)) if bias else None

    def kernel(self) -> torch.Tensor:
        """The assembled `[k, k, k, k]` kernel."""
        return assemble_4d(self.weight, self.ksize, self.ktype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` `[N, h1, w1, h2, w2]` -> same shape."""
        return correlate4d(x, self.kernel(), self.bias, method=self.method)


class CHM6d(nn.Module):
    """6D convolutional Hough matching layer (3 x 3 scale x k^4 translation, shared kernel, bias).

    ``param`` holds one `[n_groups]` weight vector per scale group (authors' names:
    ``param.0`` .. ``param.3`` for 'psi'), ``bias`` `[1]`.
    """

    def __init__(self, ksize: int = 5, ktype: KernelType = "psi", method: Literal["direct", "fft"] = "fft") -> None:
        super().__init__()
        self.ksize, self.ktype, self.method = ksize, ktype, method
        group, n = kernel_groups(ksize, ktype)
        size = torch.bincount(group, minlength=n).float()
        self.param = nn.ParameterList(
            [nn.Parameter(torch.randn(n).abs() * 1e-3 * size * len(members)) for members in scale_groups(ktype)])
        bound = 1 / math.sqrt(9 * ksize**4)
        self.bias = nn.Parameter(torch.empty(1).uniform_(-bound, bound))

    def kernel(self) -> torch.Tensor:
        """The assembled `[3, 3, k, k, k, k]` kernel."""
        return assemble_6d(list(self.param), self.ksize, self.ktype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` `[N, 3, 3, h1, w1, h2, w2]` -> same shape."""
        return correlate6d(x, self.kernel(), self.bias, method=self.method)
