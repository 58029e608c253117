"""How to read a map: the words shown beside every heatmap (colour key, cost, a blank map's reason, a primer).

Torch-free text built from the method registry's facts, so the page and the CLI say the same thing.
"""

from __future__ import annotations

import numpy as np

# what each colour means under each sign (engine.explain.render colours "all" blue-white-red, the others one hue)
COLOUR_KEY = {
    "all": ("blue", "white", "red", "blue: pushes the score of the explained class down · white: no effect · "
                                    "red: pushes it up"),
    "positive": ("white", None, "red", "only evidence FOR the explained class: white none → dark red strongest"),
    "negative": ("white", None, "blue", "only evidence AGAINST the explained class: white none → dark blue strongest"),
    "absolute": ("black", None, "yellow", "how much each pixel matters, for or against: black none → yellow most"),
}

HOW_TO_READ = """\
**How to read these maps**

1. A map answers one question: *which pixels made the model's score for the explained class go up (or down)?*
   It explains **the model**, right or wrong, not the picture.
2. Colours are scaled per map (the brightest 2% saturate), so compare where things are, not how bright two
   different maps are.
3. Different methods ask slightly different questions (see each one's line under its name); when they agree,
   trust the answer more.
4. Check the scores: a map that fails the **sanity check** (Sanity check tab) looks the same for a random
   model, and a high **deletion_auc** means removing the "important" pixels barely changed the prediction.
"""


def colour_key(sign: str) -> str:
    """One line: what the colours of a heatmap shown under `sign` mean."""
    return COLOUR_KEY[sign][3]


def cost(method) -> str:
    """How expensive a method is, in words (from its registry entry: heavy = many forward passes)."""
    if method.heavy:
        return "cost: many forward passes (in the background for big inputs)"
    if method.name == "deeplift":
        return "cost: two forward passes and a backward"
    return "cost: one forward and one backward pass"


def blank_note(method_name: str, values: np.ndarray) -> str | None:
    """Why a map is empty, or None when it is not (a blank map without a reason looks like a bug)."""
    if np.any(values != 0):
        return None
    if method_name in ("grad_cam", "guided_grad_cam"):
        return ("The map is blank: no feature-map channel gives positive evidence for this class (Grad-CAM keeps "
                "only the positive part). Try another class, or Saliency.")
    return "The map is blank: every pixel's attribution is exactly zero for this class."
