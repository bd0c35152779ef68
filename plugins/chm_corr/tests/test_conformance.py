"""chm_corr's re-ranker and matcher through the core's conformance kit (the shipped CHM reads
256-channel maps, the kit's default)."""

import torch

from xcorr_core.testing import check_matcher, check_reranker, random_maps
from xcorr_chm_corr.components import CHMCorrPlusReRanker, CHMCorrReRanker, CHMMatcher


def test_chm_components_conform() -> None:
    check_reranker(CHMCorrReRanker)
    check_matcher(CHMMatcher)


def test_chm_corr_plus_conforms_given_its_keypoint_mask() -> None:
    mask = torch.zeros(49, dtype=torch.bool)
    mask[[8, 16, 24]] = True

    class WithMask(CHMCorrPlusReRanker):  # the kit calls rerank(query, candidates); the mask is the query's
        def rerank(self, query, candidates, keypoint_mask=None):
            return super().rerank(query, candidates, keypoint_mask=mask if keypoint_mask is None else keypoint_mask)

    check_reranker(WithMask, maps=random_maps(256, (7, 7), 5))
