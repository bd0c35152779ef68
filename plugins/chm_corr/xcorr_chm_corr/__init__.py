"""CHM-Corr (Taesiri, Nguyen et al., NeurIPS 2022) on Convolutional Hough Matching (Min & Cho,
CVPR 2021): re-rank a kNN shortlist by CHMNet patch correspondences, CHM-Corr+ with part
keypoints, and explanations that show the scored correspondences."""
from .authors import TwoStreamResNet, authors_chmnet, load_authors_checkpoint
from .chmnet import CHMLearner, CHMNet
from .layers import CHM4d, CHM6d, correlate4d, correlate6d
from .pretrained import load_pretrained
from .rerank import CHMCorrOutput, chm_cells, chm_corr_rerank, chm_transfers

__version__ = "0.1.0"
__all__ = ["CHMNet", "CHMLearner", "CHM4d", "CHM6d", "correlate4d", "correlate6d", "load_pretrained", "load_authors_checkpoint",
           "authors_chmnet", "TwoStreamResNet", "chm_corr_rerank", "chm_cells", "chm_transfers", "CHMCorrOutput", "__version__"]
