"""Evaluation: retrieval metrics (R@K, ranks, two protocols) and translation metrics (BLEU, chrF, ROUGE-L)."""
