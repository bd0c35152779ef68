"""Classical homography estimation between two images (the reference H of the inverted
residual metric): SIFT keypoints, Lowe's ratio test, RANSAC — with OpenCV. Pluggable: any
callable ``(image_a [3, H, W], image_b) -> [3, 3] or None`` can be passed instead."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from xcorr_core.errors import InputError

__all__ = ["sift_ransac_homography", "HomographyEstimator"]

HomographyEstimator = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | None"]


def _gray_u8(img: torch.Tensor) -> np.ndarray:
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise InputError(f"image must be [3, H, W] or [1, H, W], got {list(img.shape)}")
    g = img.detach().float().cpu().clamp(0, 1).mean(0) if img.shape[0] == 3 else img[0].float().cpu().clamp(0, 1)
    return (g.numpy() * 255).round().astype(np.uint8)


def sift_ransac_homography(image_a: torch.Tensor, image_b: torch.Tensor, *, ratio: float = 0.75, reproj: float = 4.0,
                           min_inliers: int = 8, upscale: int = 2) -> torch.Tensor | None:
    """H `[3, 3]` (float64) mapping pixel (x, y) of image a to image b, or None when fewer than
    ``min_inliers`` RANSAC inliers support one (e.g. two different individuals).

    Small images are upscaled by ``upscale`` for SIFT; H is returned in the original pixels.
    """
    import cv2

    a, b = _gray_u8(image_a), _gray_u8(image_b)
    if upscale > 1:
        a = cv2.resize(a, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
        b = cv2.resize(b, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    sift = cv2.SIFT_create()
    ka, da = sift.detectAndCompute(a, None)
    kb, db = sift.detectAndCompute(b, None)
    if da is None or db is None or len(ka) < 4 or len(kb) < 4:
        return None
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [m for m, *rest in knn if rest and m.distance < ratio * rest[0].distance]
    if len(good) < 4:
        return None
    # OpenCV puts pixel centres at integers (and resize maps x -> (x + 0.5) s - 0.5); xcorr puts
    # them at + 0.5, so (x_up + 0.5) / s is the point in xcorr's coordinates of the original image
    src = (np.float32([ka[m.queryIdx].pt for m in good]) + 0.5) / upscale
    dst = (np.float32([kb[m.trainIdx].pt for m in good]) + 0.5) / upscale
    H, mask = cv2.findHomography(src, dst, cv2.RANSAC, reproj / upscale)
    if H is None or mask is None or int(mask.sum()) < min_inliers:
        return None
    return torch.from_numpy(H).double()
