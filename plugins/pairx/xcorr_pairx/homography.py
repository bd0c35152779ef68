"""Classical homography estimation between two images (the reference H of the inverted
residual metric): SIFT keypoints, Lowe's ratio test, RANSAC — with OpenCV. Pluggable: any
callable ``(image_a [3, H, W], image_b) -> [3, 3] or None`` can be passed instead."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from xcorr_core.errors import InputError

__all__ = ["sift_ransac_homography", "sift_features", "homography_from_features", "HomographyEstimator"]

HomographyEstimator = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | None"]


def _gray_u8(img: torch.Tensor) -> np.ndarray:
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise InputError(f"image must be [3, H, W] or [1, H, W], got {list(img.shape)}")
    g = img.detach().float().cpu().clamp(0, 1).mean(0) if img.shape[0] == 3 else img[0].float().cpu().clamp(0, 1)
    return (g.numpy() * 255).round().astype(np.uint8)


def sift_features(image: torch.Tensor, *, upscale: int = 2) -> tuple[np.ndarray, np.ndarray | None]:
    """SIFT keypoints `[K, 2]` (float32, in xcorr's pixel coordinates of the original image) and
    descriptors `[K, 128]` (None when there are none) of one image, upscaled by ``upscale`` first."""
    import cv2

    g = _gray_u8(image)
    if upscale > 1:
        g = cv2.resize(g, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    kp, desc = cv2.SIFT_create().detectAndCompute(g, None)
    # OpenCV puts pixel centres at integers (and resize maps x -> (x + 0.5) s - 0.5); xcorr puts
    # them at + 0.5, so (x_up + 0.5) / s is the point in xcorr's coordinates of the original image
    pts = (np.float32([k.pt for k in kp]).reshape(-1, 2) + 0.5) / upscale
    return pts, desc


def homography_from_features(fa: tuple[np.ndarray, np.ndarray | None], fb: tuple[np.ndarray, np.ndarray | None], *,
                             ratio: float = 0.75, reproj: float = 4.0, min_inliers: int = 8, upscale: int = 2) -> torch.Tensor | None:
    """The RANSAC homography between two images' `sift_features` (see `sift_ransac_homography`)."""
    import cv2

    (pa, da), (pb, db) = fa, fb
    if da is None or db is None or len(pa) < 4 or len(pb) < 4:
        return None
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [m for m, *rest in knn if rest and m.distance < ratio * rest[0].distance]
    if len(good) < 4:
        return None
    src = pa[[m.queryIdx for m in good]]
    dst = pb[[m.trainIdx for m in good]]
    H, mask = cv2.findHomography(src, dst, cv2.RANSAC, reproj / upscale)
    if H is None or mask is None or int(mask.sum()) < min_inliers:
        return None
    return torch.from_numpy(H).double()


def sift_ransac_homography(image_a: torch.Tensor, image_b: torch.Tensor, *, ratio: float = 0.75, reproj: float = 4.0,
                           min_inliers: int = 8, upscale: int = 2) -> torch.Tensor | None:
    """H `[3, 3]` (float64) mapping pixel (x, y) of image a to image b, or None when fewer than
    ``min_inliers`` RANSAC inliers support one (e.g. two different individuals).

    Small images are upscaled by ``upscale`` for SIFT; H is returned in the original pixels. To
    compare one image with many, compute `sift_features` once and call `homography_from_features`.
    """
    return homography_from_features(sift_features(image_a, upscale=upscale), sift_features(image_b, upscale=upscale),
                                    ratio=ratio, reproj=reproj, min_inliers=min_inliers, upscale=upscale)
