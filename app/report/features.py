"""The Run report's "What the network learned": the first layer's filters, the validation examples laid out in 2-D by
their penultimate-layer features (PCA), before training and after side by side, each with the k-nearest-neighbour
accuracy of its features, and the nearest neighbours of a chosen example in feature space against pixel space.

"Before" is the run's `initial.safetensors` (the weights it started from: random, or its source run's when it
started from another), "after" its best (or last) weights. The numbers come from engine.diagnostics.features on the
first SAMPLE validation examples; the figures from app/charts/features.py. Computed in this process once per run and
weights (cached), in about a second for the zoo's models. The t-SNE layout, slower (about 10 s per layout for 500
examples on a busy 2-core machine), runs on a job board shared by every session (app/server/explain_jobs.py) while
a progress bar polls it; PCA shows at once. Text runs get the layout of their sentence codes, with the sentence on
hover.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.charts.features import filters_figure, image_strip, layout_figure
from app.charts.text import escape_md
from app.server.explain_jobs import FINISHED, JobBoard
from app.ui.presentation import plotly_chart
from app.ui.state import run_split
from engine.config import RunConfig
from engine.records import ACTIVE, RunKind, RunRecord

SAMPLE = 500  # validation examples laid out: enough to see clusters, few enough to hover and compute in a second
NEIGHBOURS = 8
PICK_KEY = "features_example"
METHOD_KEY = "features_method"
LAYOUTS = {"PCA": ("first principal component", "second"), "t-SNE": ("t-SNE 1", "t-SNE 2")}


@st.cache_resource(show_spinner=False)
def layout_jobs() -> JobBoard:
    """One thread for t-SNE layouts, shared by every session; a layout is keyed by run, weights and version."""
    return JobBoard(max_workers=1, keep=16, thread_name="features")


def tsne_job(before: np.ndarray, after: np.ndarray, progress) -> tuple[np.ndarray, np.ndarray]:
    """Both t-SNE layouts, on the board's thread; progress: half once the first is done."""
    from engine.diagnostics.features import tsne_2d

    first = tsne_2d(before)
    progress(0.5)
    return first, tsne_2d(after)


@st.fragment(run_every=1.0)
def tsne_progress(job_key: tuple) -> None:
    """A live progress bar for a t-SNE job; reruns the page once the layouts are ready."""
    board = layout_jobs()
    if board.status(job_key) in (None, *FINISHED):  # None: dropped from the board: the rerun submits it again
        st.rerun()
    st.progress(board.progress(job_key), text="t-SNE: computing both layouts in the background (PCA meanwhile)...")


def tsne_coords(run_id: str, version: float, data: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """The t-SNE layouts (before, after) when ready; else None, with a progress bar, while they compute."""
    board, key = layout_jobs(), ("tsne", run_id, version)
    board.submit(key, tsne_job, data["before"]["features"], data["after"]["features"])
    if board.status(key) not in FINISHED:
        tsne_progress(key)
        return None
    try:
        return board.result(key)
    except Exception as exc:  # noqa: BLE001 - scikit-learn's own failure, said where the layout would be
        st.warning(f"t-SNE failed ({type(exc).__name__}: {escape_md(exc)}); showing PCA.")
        return None


@st.cache_data(show_spinner="Reading what the network learned...", max_entries=8)
def learned(run_id: str, after: str, version: float) -> dict:
    """Before/after layouts, filters and the sample's pixels for one run (`version`: when the run ended, so a
    resumed run is read again). FileNotFoundError when a checkpoint is missing."""
    import torch

    from engine.checkpoints import INITIAL_EPOCH, load_run_model
    from engine.data.loading import normalize
    from engine.diagnostics.features import feature_layout, first_layer_filters, knn_accuracy

    out: dict = {}
    for name, which in (("before", INITIAL_EPOCH), ("after", after)):
        model, config, info, _ = load_run_model(run_id, which)
        split = run_split(config)
        count = min(SAMPLE, len(split.val_y))
        raw, y = split.val_x[:count], split.val_y[:count]
        x = normalize(raw, split.mean, split.std) if split.mean else raw
        layout = feature_layout(model, x, y)
        out[name] = {"coords": layout.coords, "predicted": layout.predicted, "knn": layout.knn,
                     "features": layout.features.numpy(),
                     "filters": first_layer_filters(model, info.channels, info.size) if split.text is None else None}
    out["labels"], out["classes"] = y.numpy(), list(split.info.classes)
    if split.text is not None:
        from engine.text.vocab import detokenize

        out["sentences"] = [detokenize(tokens, config.text_level) for tokens in split.text.val_tokens[:count]]
        out["pixels"] = None
    else:
        pixels = raw.clamp(0, 1).permute(0, 2, 3, 1).numpy()
        out["pixels"] = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
        out["pixel_knn"] = knn_accuracy(torch.from_numpy(out["pixels"].reshape(count, -1)), y)
    return out


def features_section(run: RunRecord) -> None:
    config: RunConfig = run["config"]
    if run["kind"] != RunKind.TRAIN:  # a helper job (LR finder, overfit one batch) keeps no weights of its own
        return
    st.subheader("What the network learned")
    if run["status"] in ACTIVE:
        st.caption("The filters, the feature layout and the neighbours appear here when the run ends.")
        return
    try:
        version = float(run.get("finished_at") or 0.0)
        data = learned(run["run_id"], "best", version)
    except FileNotFoundError as exc:
        st.info(f"Not available for this run: {escape_md(exc)}.")
        return
    before, after = data["before"], data["after"]
    started = "its source run's weights" if config.init_from else "random weights"
    method = st.segmented_control("layout", list(LAYOUTS), default="PCA", key=METHOD_KEY,
                                  help="PCA: the two directions along which the codes spread most (at once). t-SNE: "
                                       "keeps each example near its nearest neighbours (computed in the background)")
    coords = (before["coords"], after["coords"])
    if method == "t-SNE":
        tsne = tsne_coords(run["run_id"], version, data)
        coords, method = (tsne, method) if tsne is not None else (coords, "PCA")
    how = "projected on their two main directions" if method == "PCA" else "placed by t-SNE, neighbours kept together"
    st.caption(f"The first {len(data['labels']):,} validation examples, laid out by the codes the classifier reads "
               f"(the penultimate layer's output, {how}). Colour: the true class; a cross: the model's answer is "
               f"wrong. Before training = {started}; after = the best weights. Click a point to see its nearest "
               "neighbours below.")
    columns = st.columns(2)
    chosen = None
    for column, (name, layout), xy in zip(columns, (("Before training", before), ("After training", after)), coords):
        with column:
            st.markdown(f"**{name}** · k-NN accuracy of the features **{layout['knn']:.1%}**",
                        help="each example classified by the 5 examples nearest to it in this feature space "
                             "(cosine similarity): how well the features separate the classes")
            figure = layout_figure(xy, data["labels"], layout["predicted"], data["classes"],
                                   hover=data.get("sentences"), axes=LAYOUTS[method])
            event = plotly_chart(figure, key=f"features_layout_{name.split()[0].lower()}", on_select="rerun",
                                 selection_mode="points")
            chosen = _clicked(event) if _clicked(event) is not None else chosen
    if data.get("pixel_knn") is not None:
        st.caption(f"For comparison, k-NN on the raw pixels: {data['pixel_knn']:.1%}. Features better than pixels "
                   "mean the network learned what tells the classes apart, not just what the images look like.")
    if before["filters"] is not None:
        _filters(before["filters"], after["filters"], config)
    if data["pixels"] is not None:
        _neighbours(data, chosen)


def _clicked(event) -> int | None:
    """The validation example a click on a layout chose (its customdata), None when none was clicked."""
    try:
        points = event.selection.points  # type: ignore[union-attr]
    except AttributeError:
        return None
    for point in points or []:
        value = point.get("customdata")
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    return None


def _filters(first: np.ndarray, last: np.ndarray, config: RunConfig) -> None:
    what = "convolution kernels" if config.model in ("convnet", "resnet") else "weight rows, as images"
    st.markdown(f"**The first layer's filters** ({what}; blue negative, red positive)")
    left, right = st.columns(2)
    with left:
        plotly_chart(filters_figure(first, "before training"), key="features_filters_before")
    with right:
        plotly_chart(filters_figure(last, "after training"), key="features_filters_after")


def _neighbours(data: dict, clicked: int | None) -> None:
    count = len(data["labels"])
    if clicked is not None:
        st.session_state[PICK_KEY] = clicked
    index = int(st.number_input("validation example", 0, count - 1, key=PICK_KEY, value=0,
                                help="or click a point in a layout above"))
    import torch

    from engine.diagnostics.features import nearest

    by_features = nearest(torch.from_numpy(data["after"]["features"]), index, NEIGHBOURS)
    by_pixels = nearest(torch.from_numpy(data["pixels"].reshape(count, -1)), index, NEIGHBOURS)
    classes, labels = data["classes"], data["labels"]
    st.markdown(f"**Nearest neighbours of example {index}** (true class {escape_md(classes[labels[index]])})")
    image_col, rows_col = st.container(key="features_neighbours").columns([1, 6], vertical_alignment="center")
    image_col.image(data["pixels"][index], clamp=True, width=84)
    for title, found in (("in feature space (after training)", by_features), ("in pixel space", by_pixels)):
        same = sum(int(labels[i] == labels[index]) for i in found)
        rows_col.image(image_strip(data["pixels"][found]), clamp=True, width="stretch",
                       caption=f"{title}: {same} of {len(found)} of the same class ("
                               + escape_md(" ".join(classes[labels[i]] for i in found)) + ")")
