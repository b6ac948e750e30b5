"""Training: recipes, the training data pipeline, and the C²RL training loop (`slsearch train`).

The library (`slsearch.models`, `slsearch.encode`) imports without anything from here.
"""
