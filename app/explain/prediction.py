"""The Explain page's prediction: what the model says about the picture, whether the picture resembles what it
learned from (the out-of-distribution check), the picture as the model sees it, its top classes, and the class to
explain (the predicted one unless the user picks another).
"""

from __future__ import annotations

import streamlit as st

from app.charts.explain import class_label, topk_figure, topk_table
from app.charts.text import escape_md
from app.explain.choices import class_to_explain
from app.explain.picture import SHOW_PX
from app.ui.presentation import plotly_chart
from engine.explain.methods import predict
from engine.explain.ood import OodDetector, calibrate_on_split
from engine.explain.render import Subject, enlarge, image_rgb, run_split


@st.cache_resource(max_entries=6, show_spinner="Measuring the validation images, for the familiarity check...")
def ood_detector(subject_key: str, _subject: Subject) -> OodDetector | None:
    """Calibrated once per checkpoint on the run's validation split (None for a model without one)."""
    if _subject.config is None:
        return None
    return calibrate_on_split(_subject.model, _subject.spec, run_split(_subject.config))


def prediction_section(subject: Subject, subject_key: str, picture: dict) -> int:
    """Shows the prediction and the picture; returns the class to explain."""
    probs = predict(subject.model, picture["inputs"])[0]
    predicted = int(probs.argmax())
    st.markdown(f"#### The model says: {escape_md(subject.classes[predicted])} ({float(probs[predicted]):.1%})")
    detector = ood_detector(subject_key, _subject=subject)
    if detector is not None:
        familiarity = detector.score(subject.model, picture["inputs"], picture["pixels"])
        if familiarity.unfamiliar:
            st.warning(familiarity.message(), icon="⚠️")
    else:
        st.caption("No familiarity check: this model comes without its training data, so TrainLens cannot tell "
                   "whether the input resembles what it learned from.")
    view_col, prob_col = st.columns([1, 2])
    with view_col:
        st.image(enlarge(image_rgb(picture["pixels"]), SHOW_PX), caption="as the model sees it")
        for note in picture["notes"]:
            st.caption(escape_md(note))  # notes quote class names, which may come from a file
    with prob_col:
        plotly_chart(topk_figure(topk_table(probs.numpy(), subject.classes)), key="explain_topk")
        target = class_to_explain(st, "explain_target", (subject_key, picture["key"]), predicted,
                                  range(len(subject.classes)),
                                  lambda i: f"{class_label(subject.classes, i)} · p = {float(probs[i]):.1%}"
                                  + (" · predicted" if i == predicted else ""))
    return target
