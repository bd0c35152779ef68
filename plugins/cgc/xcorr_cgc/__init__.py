"""CGC (Pillai et al., "Consistent Explanations by Contrastive Learning", CVPR 2022): the training
loss that makes Grad-CAM maps consistent under crops and flips, its three views, Grad-CAM
explainers, and attribution-quality metrics for any pixel map (Content Heatmap, insertion and
deletion AUC, explanation consistency). Values the paper leaves open are config fields (see the
docs page's table of assumptions)."""
from .attribution import blur, consistency, content_heatmap, curve_auc, eval_mode, insertion_deletion, rise_blur_kernel
from .heatmaps import LayerMaps, captum_map, layer_maps, normalise_mass, upsample
from .loss import CGCConfig, CGCLoss, CGCOutput, info_nce, paper_total
from .pretrained import load_pretrained
from .views import CGCBatch, CGCViews, ViewsConfig, crop_params, make_views, orig_view, transform_maps

__version__ = "0.1.0"
__all__ = ["CGCViews", "ViewsConfig", "CGCBatch", "make_views", "crop_params", "orig_view", "transform_maps",
           "layer_maps", "captum_map", "LayerMaps", "upsample", "normalise_mass",
           "CGCConfig", "CGCLoss", "CGCOutput", "info_nce", "paper_total",
           "content_heatmap", "insertion_deletion", "curve_auc", "consistency", "blur", "rise_blur_kernel", "eval_mode",
           "load_pretrained", "__version__"]
