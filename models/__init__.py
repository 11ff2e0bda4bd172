"""Pretrained weights: the shipped photo-mode encoder, and the full encoder that
``python -m models.download`` fetches (ignored by git)."""
