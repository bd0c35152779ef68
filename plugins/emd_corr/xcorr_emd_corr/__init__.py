"""EMD-Corr (Nguyen, Taesiri, Nguyen et al., NeurIPS 2022): re-rank a kNN shortlist by the
optimal-transport flow between patch embeddings, and explain decisions with the flows."""
from .emd import EMDCorrOutput, emd_corr_scores, emd_corr_scores_cells, patch_weights
from .sinkhorn import SinkhornResult, sinkhorn, sinkhorn_log, sinkhorn_scaling

__version__ = "0.1.0"
__all__ = ["sinkhorn", "sinkhorn_scaling", "sinkhorn_log", "SinkhornResult", "emd_corr_scores", "emd_corr_scores_cells", "patch_weights", "EMDCorrOutput", "__version__"]
