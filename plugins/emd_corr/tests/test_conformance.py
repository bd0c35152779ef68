"""emd_corr's components through the core's conformance kit, and the kit catching a broken one."""

import pytest
import torch

import xcorr_core as xc
from xcorr_core.testing import ConformanceError, check_explainer, check_metric, check_reranker, random_maps
from xcorr_emd_corr.components import EMDCorrExplainer, EMDCorrReRanker, ExplanationDiversity


def _cases(n: int = 2) -> list[xc.Case]:
    """Decisions as the pipeline builds them for EMD-Corr: a shortlist of 6, re-ranked, top 5 voting."""
    rr = EMDCorrReRanker()
    cases = []
    for i in range(n):
        q, c = random_maps(32, (4, 4), 6, seed=i)
        r = rr.rerank(q, c)
        shortlist = torch.arange(6) * 10 + i
        labels = torch.tensor([0, 1, 1, 0, 1, 2])[r.order]
        cases.append(xc.Case(query_id=i, prediction=1, confidence=0.6, method="emd_corr", ranking=r, shortlist_ids=shortlist,
                             neighbour_ids=shortlist[r.order][:5], neighbour_labels=labels[:5],
                             neighbour_scores=r.scores[r.order][:5], grid=(4, 4)))
    return cases


def test_emd_corr_components_conform() -> None:
    check_reranker(EMDCorrReRanker)
    check_reranker(EMDCorrReRanker, config={"stop": "marginal", "solver": "log"})
    check_explainer(EMDCorrExplainer, cases=_cases())
    check_explainer(EMDCorrExplainer, cases=_cases(), config={"boxes": False})
    check_metric(ExplanationDiversity)


def test_a_ranking_that_is_not_a_permutation_fails() -> None:
    class Duplicates(EMDCorrReRanker):
        def rerank(self, query, candidates):
            r = super().rerank(query, candidates)
            return r.model_copy(update={"order": r.order.clone().fill_(int(r.order[0]))})

    with pytest.raises(ConformanceError, match="is not a permutation of its 6 candidates"):
        check_reranker(Duplicates)
