"""Eyeglasses: a synthetic catalogue, a virtual try-on renderer, and glasses search (Glass Finder):
eye-band crops, a metric-learning embedding, faiss indexes, registration, refusal (models.glasses.search)."""
