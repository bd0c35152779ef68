"""pairx's metrics through the core's conformance kit, on PAIR-X explanations of the shipped
SynthHerd embedding. (The pairx explainer explains a pair of images under a model, which a pipeline
`Case` does not carry; `explain_pair` is its entry point, tested in test_pairx.py.)"""

import torch

from xcorr_core.data import SynthHerd
from xcorr_core.models import load_pretrained
from xcorr_core.testing import check_metric, check_statistic
from xcorr_pairx import explain_pair
from xcorr_pairx.metrics import InvertedResidualMean, MatchCoverage, RankCorrelation, Separability


def test_pairx_metrics_conform() -> None:
    herd, model = SynthHerd("test", individuals=2, photos=2), load_pretrained("herd").eval()
    pairs = [(0, 1), (2, 3)]  # two photos of each individual
    exps = [explain_pair(model, herd[i][0], herd[j][0], layer="layer3", n=10) for i, j in pairs]
    homographies = torch.stack([herd.true_homography(i, j) for i, j in pairs])
    check_metric(MatchCoverage, data={"explanations": exps})
    check_metric(InvertedResidualMean, data={"explanations": exps, "homographies": homographies})
    g = torch.Generator().manual_seed(0)
    scores, sims = torch.rand(60, generator=g, dtype=torch.float64), torch.rand(60, generator=g, dtype=torch.float64)
    check_statistic(RankCorrelation, data={"scores": scores, "similarities": sims})
    check_statistic(Separability, data={"scores": scores, "similarities": sims, "correct": torch.arange(60) % 2 == 0},
                 config={"bins": 3})
