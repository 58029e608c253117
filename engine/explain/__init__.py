"""Explanations: Captum methods, their quality scores, rendering, image decoding and pretrained models.

Importing the package registers token attributions (engine.explain.text) with `explain()`, so integer token ids
are explained wherever `engine.explain.methods.explain` is called."""

from engine.explain import text as _text  # noqa: F401 - registers itself with methods.INPUT_EXPLAINERS
