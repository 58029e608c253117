"""Explanations: Captum methods, their quality scores, rendering, image decoding and pretrained models."""
