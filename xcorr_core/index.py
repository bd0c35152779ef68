"""`GalleryIndex`: nearest-neighbour search over pooled gallery vectors, on faiss.

Cosine similarity (inner product of L2-normalised vectors) by default; exact
(``flat``) or approximate search: ``hnsw`` (graph), ``ivf_flat`` (inverted lists of full
vectors) and ``ivf_pq`` (inverted lists of product-quantised codes, ``pq_m`` bytes a vector).
The IVF kinds are trained (k-means) on a sample first: `GalleryIndex.build` does both. Ids and
labels travel with the vectors. Saved as one file written atomically, with a checksum, and loaded with
``torch.load(weights_only=True)``. Depends on faiss, numpy, torch and the core's
errors/results/validation/fileio modules.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from .errors import IndexFileError, InputError
from .fileio import atomic_write
from .results import Tensor, TensorModel
from .validation import check_tensor

if TYPE_CHECKING:
    import faiss

__all__ = ["GalleryIndex", "SearchResult"]

_FORMAT = "xcorr.GalleryIndex"
_VERSION = 1

Metric = Literal["cosine", "ip", "l2"]
Kind = Literal["flat", "hnsw", "ivf_flat", "ivf_pq"]
KINDS = ("flat", "hnsw", "ivf_flat", "ivf_pq")


def _digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of the tensors' bytes, in order, without copying them (the same value as hashing their concatenation)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(memoryview(np.ascontiguousarray(t.numpy())).cast("B"))
    return h.hexdigest()


@functools.cache
def _faiss() -> ModuleType:
    """faiss, imported on first use: `import xcorr_core` does not load it (a second or more of start-up)."""
    return importlib.import_module("faiss")


def _read_faiss(blob: torch.Tensor) -> faiss.Index:
    """Deserialise a faiss index from a (memory-mapped) uint8 tensor in 16 MB reads, without the
    whole-buffer copy `faiss.deserialize_index` makes: the peak stays at about one index."""
    view = memoryview(np.ascontiguousarray(blob.numpy())).cast("B")
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        chunk = view[pos:pos + n].tobytes()
        pos += len(chunk)
        return chunk

    faiss = _faiss()
    return faiss.read_index(faiss.PyCallbackIOReader(read, 1 << 24))


def _rows_f32(vectors: torch.Tensor | np.ndarray, rows: slice | np.ndarray) -> torch.Tensor:
    """float32 rows of a tensor or a (memory-mapped) array, copied."""
    if isinstance(vectors, torch.Tensor):
        return vectors[torch.as_tensor(rows) if isinstance(rows, np.ndarray) else rows].float()
    return torch.from_numpy(np.array(vectors[rows], dtype=np.float32))


class SearchResult(TensorModel):
    """Top-k neighbours of each query, best first.

    Attributes:
        ids: long `[Q, k]` gallery ids.
        positions: long `[Q, k]` row positions in the index (order of `add`).
        labels: long `[Q, k]` gallery labels (-1 where none were given).
        scores: `[Q, k]` similarity (cosine / inner product) or negative squared L2
            distance, so higher is always more similar.
    """

    ids: Tensor
    positions: Tensor
    labels: Tensor
    scores: Tensor


class GalleryIndex:
    """A searchable gallery of D-dimensional vectors.

    Args:
        dim: vector dimension D.
        metric: ``"cosine"`` (default), ``"ip"`` (raw inner product) or ``"l2"``.
        kind: ``"flat"`` (exact), ``"hnsw"``, ``"ivf_flat"`` or ``"ivf_pq"`` (approximate, for large galleries).
        hnsw_m: HNSW graph degree.
        ef_search: HNSW search breadth (recall vs speed).
        nlist: IVF inverted lists (k-means centroids).
        nprobe: IVF lists visited per query (recall vs speed).
        pq_m: IVF-PQ sub-quantisers = bytes per vector (8-bit codes); must divide ``dim``.
        refine: approximate kinds: search ``k * refine`` and re-score them exactly from the vectors
            given to `attach_vectors` (1: off).
        ef_construction: HNSW build breadth (graph quality vs build time).
    """

    def __init__(self, dim: int, metric: Metric = "cosine", kind: Kind = "flat", *, hnsw_m: int = 32, ef_search: int = 128,
                 nlist: int = 1024, nprobe: int = 32, pq_m: int = 64, refine: int = 1, ef_construction: int = 40) -> None:
        if dim < 1:
            raise InputError(f"dim must be >= 1, got {dim}")
        if metric not in ("cosine", "ip", "l2"):
            raise InputError(f"metric must be 'cosine', 'ip' or 'l2', got {metric!r}")
        if kind not in KINDS:
            raise InputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if min(hnsw_m, ef_search, nlist, nprobe, pq_m, refine, ef_construction) < 1:
            raise InputError("hnsw_m, ef_search, nlist, nprobe, pq_m, refine and ef_construction must be >= 1")
        if kind == "ivf_pq" and dim % pq_m:
            raise InputError(f"pq_m={pq_m} must divide the dimension {dim} (e.g. {', '.join(str(m) for m in (8, 16, 32, 64, 128) if dim % m == 0)})")
        self.dim, self.metric, self.kind = dim, metric, kind
        self.hnsw_m, self.ef_search = hnsw_m, ef_search
        self.nlist, self.nprobe, self.pq_m = nlist, nprobe, pq_m
        self.refine, self.ef_construction = refine, ef_construction
        self._vectors: torch.Tensor | np.ndarray | None = None
        self._index = self._new_faiss()
        self.ids = torch.empty(0, dtype=torch.int64)
        self.labels = torch.empty(0, dtype=torch.int64)

    def _new_faiss(self) -> faiss.Index:
        faiss = _faiss()
        fmetric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        if self.kind == "flat":
            return faiss.IndexFlat(self.dim, fmetric)
        if self.kind == "hnsw":
            idx = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, fmetric)
            idx.hnsw.efSearch = self.ef_search
            idx.hnsw.efConstruction = self.ef_construction
            return idx
        quantizer = faiss.IndexFlat(self.dim, fmetric)
        if self.kind == "ivf_flat":
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, fmetric)
        else:
            ivf = faiss.IndexIVFPQ(quantizer, self.dim, self.nlist, self.pq_m, 8, fmetric)
        ivf.nprobe = self.nprobe
        return ivf

    @property
    def is_trained(self) -> bool:
        """False for an IVF index before `train`."""
        return bool(self._index.is_trained)

    def train(self, sample: torch.Tensor, *, seed: int = 0) -> None:
        """Train an IVF index's k-means (and PQ codebooks) on ``sample`` `[n, D]` (no-op for flat / HNSW).

        ``nlist`` is lowered to n // 39 when the sample is too small for it (faiss wants >= 39 points per list)."""
        if self.kind not in ("ivf_flat", "ivf_pq") or self.is_trained:
            return
        arr = self._prepare("sample", sample)
        need = 256 if self.kind == "ivf_pq" else 1
        if arr.shape[0] < max(need, 39):
            raise InputError(f"an {self.kind} index needs a training sample of >= {max(need, 39)} vectors, got {arr.shape[0]}")
        nlist = max(1, min(self.nlist, arr.shape[0] // 39))
        if nlist != self.nlist:
            self.nlist = nlist
            self._index = self._new_faiss()
        self._index.cp.seed = seed
        if self.kind == "ivf_pq":
            self._index.pq.cp.seed = seed
        self._index.train(arr)

    @classmethod
    def build(cls, vectors: torch.Tensor, labels: torch.Tensor | None = None, ids: torch.Tensor | None = None, *,
              metric: Metric = "cosine", kind: Kind = "flat", train_size: int = 100_000, seed: int = 0, chunk: int = 65536,
              **params: int) -> "GalleryIndex":
        """An index of ``vectors`` `[N, D]` (a tensor or a memory-mapped array): IVF kinds are trained on
        ``train_size`` rows drawn with ``seed``, then everything is added in chunks of ``chunk`` rows."""
        index = cls(int(vectors.shape[1]), metric, kind, **params)
        n = int(vectors.shape[0])
        if not index.is_trained:
            g = torch.Generator().manual_seed(seed)
            rows = torch.randperm(n, generator=g)[: min(n, train_size)].sort().values
            index.train(_rows_f32(vectors, rows.numpy()), seed=seed)
        for s0 in range(0, n, chunk):
            sl = slice(s0, min(n, s0 + chunk))
            index.add(_rows_f32(vectors, sl),
                      None if labels is None else labels[sl], None if ids is None else ids[sl])
        if index.refine > 1 and index.kind != "flat":
            index.attach_vectors(vectors)
        return index

    def nbytes(self) -> int:
        """Bytes of the serialised faiss index (vectors, codes, graph, centroids; ids/labels not included)."""
        return int(_faiss().serialize_index(self._index).size)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def __repr__(self) -> str:
        return f"GalleryIndex(dim={self.dim}, metric={self.metric!r}, kind={self.kind!r}, size={len(self)})"

    def _prepare(self, name: str, x: torch.Tensor) -> np.ndarray:
        check_tensor(name, x, ndim=2, floating=True, finite=True)
        if x.shape[1] != self.dim:
            raise InputError(f"{name} has dimension {x.shape[1]} but the index has dimension {self.dim}")
        x = x.detach().to("cpu", torch.float32)
        if self.metric == "cosine":
            x = x / x.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)  # no overflow for huge vectors
            norms = x.norm(dim=1, keepdim=True)
            if bool((norms == 0).any()):
                raise InputError(f"{name} has {int((norms == 0).sum())} zero vector(s); cosine is undefined")
            x = x / norms
        elif bool((x.abs() > 1e18).any()):
            raise InputError(f"{name} has values above 1e18: their squares overflow float32 under the {self.metric!r} metric")
        return np.ascontiguousarray(x.numpy())

    def add(self, vectors: torch.Tensor, labels: torch.Tensor | None = None, ids: torch.Tensor | None = None) -> None:
        """Append ``vectors`` `[n, D]` with optional ``labels`` `[n]` and ``ids`` `[n]` (default: positions)."""
        arr = self._prepare("vectors", vectors)
        n = arr.shape[0]
        if labels is None:
            labels = torch.full((n,), -1, dtype=torch.int64)
        check_tensor("labels", labels, shape=[n], floating=False)
        if ids is None:
            ids = torch.arange(len(self), len(self) + n, dtype=torch.int64)
        check_tensor("ids", ids, shape=[n], floating=False)
        ids, labels = ids.to("cpu", torch.int64), labels.to("cpu", torch.int64)
        if ids.unique().numel() != n or bool(torch.isin(ids, self.ids).any()):
            raise InputError("ids must be unique across the whole index")
        if not self.is_trained:
            raise InputError(f"an {self.kind} index must be trained first: call train(sample) or use GalleryIndex.build")
        self._index.add(arr)
        self.ids = torch.cat([self.ids, ids])
        self.labels = torch.cat([self.labels, labels])

    def search(self, queries: torch.Tensor, k: int) -> SearchResult:
        """The ``k`` most similar gallery items of each query `[Q, D]`, best first."""
        if len(self) == 0:
            raise InputError("the gallery index is empty; add() vectors before searching")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise InputError(f"k must be an int, got {type(k).__name__} {k!r}")
        if not 1 <= k <= len(self):
            raise InputError(f"k={k} must be between 1 and the gallery size {len(self)}")
        device = queries.device if isinstance(queries, torch.Tensor) else torch.device("cpu")
        arr = self._prepare("queries", queries)
        kk = min(len(self), k * self.refine) if self.refine > 1 and self.kind != "flat" else k
        scores, pos = self._index.search(arr, kk)
        pos_t = torch.from_numpy(pos).to(torch.int64)
        if bool((pos_t[:, :k] < 0).any()):  # approximate search may return fewer than k
            raise InputError(f"approximate search returned fewer than k={k} results; raise ef_search / nprobe or use kind='flat'")
        if kk > k:
            scores, pos_t = self._rescore(arr, pos_t, k)
        s = torch.from_numpy(scores)
        if self.metric == "l2":
            s = -s
        return SearchResult(ids=self.ids[pos_t].to(device), positions=pos_t.to(device), labels=self.labels[pos_t].to(device), scores=s.to(device))

    def attach_vectors(self, vectors: torch.Tensor | np.ndarray) -> None:
        """The gallery's full vectors `[N, D]` (a tensor, or a memory-mapped ``vectors.npy``), row i =
        index row i: with ``refine = R > 1`` a search takes the approximate top ``k * R`` and re-scores
        them exactly from these rows (only those rows are read)."""
        if tuple(vectors.shape) != (len(self), self.dim):
            raise InputError(f"vectors must be [{len(self)}, {self.dim}], got {list(vectors.shape)}")
        self._vectors = vectors

    def _rescore(self, q: np.ndarray, pos: torch.Tensor, k: int, chunk: int = 64) -> tuple[np.ndarray, torch.Tensor]:
        """Exact scores of each query's approximate shortlist ``pos`` `[Q, K]` (-1 = none), the best ``k``.

        float32 vectors in a C-contiguous array (``vectors.npy`` memory-mapped, or a contiguous CPU
        tensor) are scored in place by faiss, reading only each query's K rows; anything else, or a
        result that overflowed, goes through `_rescore_torch`."""
        vecs = self._vectors
        if vecs is None:
            raise InputError(f"refine={self.refine} needs the full vectors: call attach_vectors() (a job's gallery attaches vectors.npy)")
        y = vecs.numpy() if isinstance(vecs, torch.Tensor) and vecs.device.type == "cpu" else vecs
        if not (isinstance(y, np.ndarray) and y.dtype == np.float32 and y.flags.c_contiguous):
            return self._rescore_torch(q, pos, k, chunk)
        ids = np.ascontiguousarray(pos.clamp_min(0).numpy(), dtype=np.int64)
        nq, kk = ids.shape
        sc = np.empty((nq, kk), np.float32)
        faiss = _faiss()
        args = (faiss.swig_ptr(y), faiss.swig_ptr(ids), self.dim, nq, kk)
        if self.metric == "l2":
            faiss.fvec_L2sqr_by_idx(faiss.swig_ptr(sc), faiss.swig_ptr(q), *args)
            sc = -sc
        else:
            faiss.fvec_inner_products_by_idx(faiss.swig_ptr(sc), faiss.swig_ptr(q), *args)
            if self.metric == "cosine":  # the index holds unit vectors: divide by each row's norm
                sq = np.empty((nq, kk), np.float32)
                zeros = np.zeros_like(q)  # a name keeps it alive: swig_ptr holds no reference to its array
                faiss.fvec_L2sqr_by_idx(faiss.swig_ptr(sq), faiss.swig_ptr(zeros), *args)
                if not np.isfinite(sq).all():  # huge rows: their squares overflow
                    return self._rescore_torch(q, pos, k, chunk)
                sc = sc / np.maximum(np.sqrt(sq), np.finfo(np.float32).tiny)
        if not np.isfinite(sc).all():  # huge rows overflowed float32: the scaled path
            return self._rescore_torch(q, pos, k, chunk)
        return self._best(torch.from_numpy(sc), pos, k)

    def _best(self, sc: torch.Tensor, pos: torch.Tensor, k: int) -> tuple[np.ndarray, torch.Tensor]:
        """The ``k`` best of scores `[Q, K]` (higher is better; -1 positions excluded), in the index's sign."""
        sc = sc.masked_fill(pos < 0, float("-inf"))
        order = torch.sort(sc, dim=1, descending=True, stable=True).indices[:, :k]
        best = sc.gather(1, order)
        return (best.neg() if self.metric == "l2" else best).numpy(), pos.gather(1, order)

    def _rescore_torch(self, q: np.ndarray, pos: torch.Tensor, k: int, chunk: int) -> tuple[np.ndarray, torch.Tensor]:
        """`_rescore` for any vectors (float16, a non-contiguous or GPU tensor, huge values): queries in
        chunks, each reading its distinct candidate rows `[U, D]` once, in row order."""
        vecs = self._vectors
        assert vecs is not None
        qt = torch.from_numpy(q)
        out_s = torch.empty(pos.shape, dtype=torch.float32)
        tiny = torch.finfo(torch.float32).tiny
        for s0 in range(0, q.shape[0], chunk):
            p = pos[s0:s0 + chunk]
            uniq, inv = torch.unique(p.clamp_min(0).flatten(), return_inverse=True)  # sorted: sequential reads
            rows = _rows_f32(vecs, uniq.numpy()).cpu()
            if self.metric == "cosine":  # as _prepare: scaled first (no overflow), then unit length
                rows /= rows.abs().amax(dim=1, keepdim=True).clamp_min(tiny)
                rows /= rows.norm(dim=1, keepdim=True).clamp_min(tiny)
            cand = rows[inv].view(p.shape[0], p.shape[1], -1)
            qc = qt[s0:s0 + chunk]
            if self.metric == "l2":
                out_s[s0:s0 + chunk] = -((cand - qc[:, None]) ** 2).sum(-1)
            else:
                out_s[s0:s0 + chunk] = torch.bmm(cand, qc[:, :, None]).squeeze(-1)
        return self._best(out_s, pos, k)

    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None, refine: int | None = None) -> None:
        """Change the search breadth of an approximate index (HNSW ``ef_search``, IVF ``nprobe``, ``refine``)."""
        self.ef_search = ef_search or self.ef_search
        self.nprobe = nprobe or self.nprobe
        self.refine = refine or self.refine
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = self.ef_search
        elif self.kind in ("ivf_flat", "ivf_pq"):
            self._index.nprobe = self.nprobe

    # -- persistence -----------------------------------------------------------------
    def _payload(self) -> tuple[dict, str]:
        blob = torch.from_numpy(_faiss().serialize_index(self._index).copy())
        digest = _digest(blob, self.ids, self.labels)
        payload = {
            "format": _FORMAT, "version": _VERSION, "dim": self.dim, "metric": self.metric, "kind": self.kind,
            "hnsw_m": self.hnsw_m, "ef_search": self.ef_search, "nlist": self.nlist, "nprobe": self.nprobe, "pq_m": self.pq_m,
            "refine": self.refine, "ef_construction": self.ef_construction,
            "index": blob, "ids": self.ids, "labels": self.labels, "sha256": digest,
        }
        return payload, digest

    def save(self, path: str | Path) -> Path:
        """Write the index to ``path`` atomically (temp file + rename)."""
        payload, _ = self._payload()
        return atomic_write(path, lambda f: torch.save(payload, f))

    @classmethod
    def load(cls, path: str | Path, *, expected_dim: int | None = None) -> "GalleryIndex":
        """Load an index saved by `save`; raise `IndexFileError` if it is missing, corrupt or mismatched."""
        path = Path(path)
        if not path.is_file():
            raise IndexFileError(f"no index file at {path}")
        try:
            # memory-mapped: the serialised index is read once, by faiss, not first copied into a buffer
            payload = torch.load(path, weights_only=True, map_location="cpu", mmap=True)
        except Exception as exc:
            raise IndexFileError(f"{path} is not a readable xcorr index file ({type(exc).__name__}: {exc})") from exc
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise IndexFileError(f"{path} is not an xcorr gallery index")
        if payload.get("version") != _VERSION:
            raise IndexFileError(f"{path} has index format version {payload.get('version')}, expected {_VERSION}")
        blob, ids, labels = payload["index"], payload["ids"], payload["labels"]
        digest = _digest(blob, ids, labels)
        if digest != payload.get("sha256"):
            raise IndexFileError(f"{path} is corrupt: checksum mismatch")
        if expected_dim is not None and payload["dim"] != expected_dim:
            raise IndexFileError(f"{path} holds {payload['dim']}-d vectors but {expected_dim}-d were expected")
        params = {k: payload[k] for k in ("hnsw_m", "ef_search", "nlist", "nprobe", "pq_m", "refine", "ef_construction") if k in payload}
        self = cls(payload["dim"], payload["metric"], payload["kind"], **params)
        self._index = _read_faiss(blob)
        self.set_search_params()
        if self._index.d != self.dim or self._index.ntotal != ids.numel() or labels.numel() != ids.numel():
            raise IndexFileError(f"{path} is inconsistent: index holds {self._index.ntotal} vectors, {ids.numel()} ids")
        self.ids, self.labels = ids.clone(), labels.clone()  # not backed by the file
        return self
