"""Explanations: Captum methods, their quality scores, rendering, image decoding and pretrained models.

The package face imports nothing, so `import engine.explain` costs no torch. Token attributions
(`engine.explain.text`) are found by `engine.explain.methods.explain` itself when it meets integer token ids (its
`INPUT_EXPLAINERS` table), so text is explained wherever `explain()` is called."""
