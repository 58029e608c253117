"""The Run report's confusion cell of a text run: its misclassified validation sentences as a table.

Sentences are users' data (a CSV) or generated; st.dataframe shows them as plain text, never as markup.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.charts import report as rf
from app.charts.text import escape_md
from app.ui.state import run_split
from engine.config import RunConfig
from engine.datasets import dataset_info
from engine.text.vocab import detokenize


def is_text(config: RunConfig) -> bool:
    return dataset_info(config.dataset).kind == "text"


def misclassified_sentences(config: RunConfig, evaluation: dict, true: int, pred: int) -> None:
    """One confusion cell's sentences, most confident mistake first."""
    labels = evaluation["labels"]
    examples = rf.cell_examples(evaluation, true, pred)
    total = int(evaluation["confusion"][true][pred])
    if not examples:
        st.info(f"None of the {total} sentences of this cell was stored (the report keeps the most confident "
                "mistakes).")
        return
    try:
        sentences = run_split(config).text.val_tokens  # the split the report was computed on
    except Exception as exc:  # noqa: BLE001 - data that cannot load (moved CSV...) still lists the mistakes
        st.warning(f"The validation sentences could not be loaded ({escape_md(exc)}); listing indices only.")
        sentences = None
    st.markdown(f"**{len(examples)} of {total} validation sentences of true class {escape_md(labels[true])} "
                f"predicted as {escape_md(labels[pred])}**, most confident mistake first")
    rows = [{"#": int(e["index"]),
             "sentence": detokenize(sentences[int(e["index"])], config.text_level) if sentences is not None else "",
             "confidence": float(e["confidence"]), "true class probability": float(e["true_prob"])}
            for e in examples]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key=f"report_sentences_{true}_{pred}")
    st.caption("Explain any of them on the Explain page (Validation sentence / Misclassified).")


def subset_accuracy(store, run_id: str) -> None:
    """The last epoch's validation accuracy on the negation/contrast sentences and on the others (sentiment)."""
    last = store.last_values(run_id)
    if "val_acc_hard" not in last:
        return
    a, b = st.columns(2)
    a.metric("accuracy on negation/contrast sentences", f"{last['val_acc_hard']:.2%}",
             help="validation sentences with a negator or a 'but' contrast: order matters there")
    if "val_acc_easy" in last:
        b.metric("accuracy on the other sentences", f"{last['val_acc_easy']:.2%}")
    st.caption("Last epoch of the trained weights. A bag of words cannot tell 'good but dull' from 'dull but "
               "good': compare a bow and a gru run here.")
