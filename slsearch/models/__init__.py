"""Towers, similarity, losses, tokenizer and checkpoints."""
