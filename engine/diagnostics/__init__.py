"""Training diagnostics: evaluation reports, the recipe checks, layer statistics and the LR finder."""
