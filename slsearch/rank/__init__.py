"""Ranking: the retrieval model loaded once, and the cascade that every search and evaluation runs.

    model.py             RetrievalModel: network + lexicon, hubness, likelihood, reader stages + decode settings + hash
    pipeline.py          RankingPipeline: FAISS candidates -> CiCo -> lexicon -> (V2T) hubness -> likelihood
                         -> (V2T) reader;
                         fit_stages
    cico.py              the CiCo stage (one query ragged, or a dense matrix)
    lexicon_stage.py     the gloss-lexicon stage (fusion with CiCo, fitted on dev)
    hubness_stage.py     the V2T hubness stage (hub scores against a bank of training clips, fitted on dev)
    likelihood_stage.py  the decoder-likelihood stage (first `depth` candidates, fitted on dev)
    reader_stage.py      the V2T reader stage (a translate-stage checkpoint re-reads the first candidates)
    span.py              match_span: where in a clip a text query matched (T2V hits' `span`)
"""

from slsearch.rank.model import RetrievalModel, load_retrieval_model
from slsearch.rank.pipeline import SCORES, ClipSide, RankingPipeline, TextSide, fit_stages

__all__ = ["RetrievalModel", "load_retrieval_model", "RankingPipeline", "ClipSide", "TextSide", "SCORES",
           "fit_stages"]
