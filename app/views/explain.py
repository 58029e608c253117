"""Explain page: ask a trained model *why*. Attribution maps side by side, their quality, and how they evolve.

Pick a run's checkpoint (or a pretrained ImageNet model, or your own) and an image: an upload, a validation sample,
one the model gets wrong, or an example from assets/. The page shows the input as the model sees it and its top
predictions; then one map per chosen method (heatmap and overlay, with quality scores and time taken), the map
across the run's checkpoints, and the model-randomization sanity check.

This script only selects and lays out: the sections are in app/explain/ (subject.py: the model; picture.py: the
image; prediction.py: what the model says; maps.py: the maps, inline or on the server's job board; trust.py: across
training and the sanity check), the figures and tables in app/charts/explain.py. Session state holds ids and plain
values only; models and tensors live in st.cache_resource / st.cache_data.
"""

from __future__ import annotations

import streamlit as st

from app.explain.maps import compare_methods
from app.explain.picture import choose_picture
from app.explain.prediction import prediction_section
from app.explain.subject import choose_subject
from app.explain.trust import across_training, sanity_check

st.title("Explain")
chosen = choose_subject()
picture = choose_picture(chosen.subject, chosen.key)
target = prediction_section(chosen.subject, chosen.key, picture)
base_key = (chosen.key, picture["key"], target)

compare_tab, training_tab, sanity_tab = st.tabs(["Compare methods", "Across training", "Sanity check"])
with compare_tab:
    sign = compare_methods(chosen.subject, picture, target, base_key)
with training_tab:
    across_training(chosen.subject, chosen.run_id, picture, target, sign)
with sanity_tab:
    sanity_check(chosen.subject, picture, target, base_key)
