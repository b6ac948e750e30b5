"""Retrieval and translation metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from slsearch.eval.metrics import first_relevant_rank, rank_metrics, retrieval_metrics, same_text_matrix
from slsearch.eval.translation_metrics import rouge_l, translation_metrics


def test_ranks_by_hand():
    s = np.array([[0.9, 0.1, 0.5],
                  [0.8, 0.7, 0.2],
                  [0.3, 0.3, 0.3]])
    # paired: row 0 -> col 0 rank 1; row 1 -> col 1 rank 2 (0.8 ahead); row 2 -> col 2: three-way tie,
    # lower indices rank first -> rank 3
    assert first_relevant_rank(s, np.eye(3, dtype=bool)).tolist() == [1, 2, 3]


def test_ties_break_by_index_both_ways():
    s = np.array([[0.5, 0.5, 0.5]])
    assert first_relevant_rank(s, np.array([[True, False, False]])).tolist() == [1]
    assert first_relevant_rank(s, np.array([[False, False, True]])).tolist() == [3]
    # several relevant: the best-placed one counts
    assert first_relevant_rank(s, np.array([[False, True, True]])).tolist() == [2]


def test_rank_metrics_with_k_larger_than_n():
    m = rank_metrics(np.array([1, 2, 3, 10]), ks=(1, 5, 100))
    assert m["R@1"] == 25.0 and m["R@5"] == 75.0 and m["R@100"] == 100.0
    assert m["MedR"] == 2.5 and m["MeanR"] == 4.0


def test_duplicate_aware_protocol_counts_equal_sentences():
    texts = ["regen morgen", "Sonne", "regen  MORGEN"]  # 0 and 2 are the same sentence
    # clip 0 scores sentence 2 highest; under the paper protocol its own sentence ranks 2nd
    s = np.array([[0.8, 0.1, 0.9],
                  [0.1, 0.9, 0.2],
                  [0.7, 0.1, 0.6]])
    m = retrieval_metrics(s, texts, ks=(1,))
    # v2t paper: row0 rank 2 (0.9 ahead), row1 rank 1, row2: own 0.6 behind 0.7 -> rank 2
    assert m["paper/v2t_R@1"] == pytest.approx(100 / 3)
    assert m["dedup/v2t_R@1"] == 100.0
    # t2v paper (columns): col0 -> clip0 0.8 top -> 1; col1 -> 1; col2 -> clip2 0.6 behind clip0 0.9 -> 2
    assert m["paper/t2v_R@1"] == pytest.approx(200 / 3)
    assert m["dedup/t2v_R@1"] == 100.0
    assert m["count"] == 3 and m["distinct_texts"] == 2


def test_same_text_matrix_and_bad_shapes():
    assert same_text_matrix(["a b", "c"], ["A  b", "d"]).tolist() == [[True, False], [False, False]]
    with pytest.raises(ValueError, match="square"):
        retrieval_metrics(np.zeros((2, 3)))


def test_translation_metrics_known_values():
    hyp = ["the cat sat on the mat"]
    m = translation_metrics(hyp, hyp)
    assert m["BLEU-4"] == pytest.approx(100.0) and m["chrF"] == pytest.approx(100.0)
    assert m["ROUGE-L"] == pytest.approx(100.0)
    # 3 of the 4 hypothesis words match, and a brevity penalty for 4 words against 6: exp(1 - 6/4) * 3/4
    m = translation_metrics(["the cat sat down"], ["the cat sat on the mat"])
    assert m["BLEU-1"] == pytest.approx(100 * np.exp(1 - 6 / 4) * 3 / 4, abs=0.01)
    assert m["BLEU-4"] < m["BLEU-1"]


def test_rouge_l_by_hand():
    # LCS("a b c d", "a c d e") = 3: P = 3/4, R = 3/4 -> F = 0.75
    assert rouge_l(["a b c d"], ["a c d e"]) == pytest.approx(75.0)
    assert rouge_l(["x"], ["y"]) == 0.0
