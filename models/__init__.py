"""Pretrained weights live in this folder (ignored by git); ``python -m models.download`` fetches the encoder."""
