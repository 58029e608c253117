"""Train page: configure a run (every RunConfig field), preview it, launch one run or a race, watch it live."""

from __future__ import annotations

import sys
import time

import numpy as np
import streamlit as st

from app.charts.metrics import lr_schedule_figure
from app.charts.text import escape_md
from app.train.config_form import config_form
from app.train.transfer_preview import transfer_lines
from app.ui.identity import session_actor
from app.ui.live import live_runs_panel
from app.ui.presentation import plotly_chart
from app.ui.state import get_runner, get_store, run_split, runs_frame
from engine.config import OPTIMIZERS, RunConfig
from engine.datasets import dataset_info
from engine.race import RECOMMENDED_LR, expand_race, parse_values
from engine.runs.access import CapReached, PermissionDenied

LAUNCHED_KEY = "launched_run_ids"
LAUNCHED_PARAM = "launched"  # the runs launched from this page, in the URL: a reload keeps the live panel
PREVIEW_PX = 680  # the preview column of an image dataset (heading, counts, schedule chart, batch grid): 645-720 px tall at 1024-1920 px wide

st.title("Train")
st.caption("Configure a run, check what it will do, then start it. Runs train in background workers: "
           "closing or reloading this page never stops them.")
# the live panel of the runs launched from here goes on top, where Start's result is seen without scrolling
launched_slot = st.container()

form_col, preview_col = st.columns([3, 2], gap="large")
with form_col:
    config, error = config_form()
    if error:
        st.error(f"Fix this before launching: {escape_md(error)}")



def load_split(config: RunConfig):
    """(the run's split, None) or (None, the readable reason it cannot be loaded)."""
    try:
        return run_split(config), None
    except ValueError as exc:  # DatasetUnavailable and bad data folders carry a readable message
        return None, str(exc)


def loads_after_start(config: RunConfig | None) -> bool:
    """Whether the preview's data waits until the browser has drawn the page (load_preview_once_drawn): only while
    this server has not imported torch yet (about 1.4 s on the first page of a fresh server on 2 cores; later pages
    keep the preview where it is, without a flicker), and only for a built-in image dataset (shipped or generated):
    it cannot be missing, so Start needs nothing from it. A dataset read from files is checked first: Start stays
    disabled while it cannot be loaded."""
    if config is None or "torch" in sys.modules:
        return False
    info = dataset_info(config.dataset)
    return info.kind == "image" and info.source in ("embedded", "synthetic")


split, data_error = None, None
later = loads_after_start(config)
if config is not None and not later:
    split, data_error = load_split(config)


@st.cache_data(show_spinner=False, max_entries=64)
def parameter_counts(config_json: str) -> dict[str, int]:
    """The model's parameters, trainable, frozen and in adapters, counted without building it for real
    (engine.transfer.estimate_summary, on torch's meta device): the largest model the form allows would take 17 GB
    of the server's memory. ValueError (a freeze pattern that matches no weight) is the form's error."""
    from engine.transfer import estimate_summary

    return estimate_summary(RunConfig.from_json(config_json))


def batch_grid(config: RunConfig, split, count: int = 32) -> tuple[np.ndarray, list[str]]:
    """The first training batch of epoch 0, augmented exactly as the run will see it, as one image grid."""
    from engine.data.augment import AugmentSpec
    from engine.data.loading import iterate_batches

    spec = AugmentSpec.from_config(config)
    xb, yb = next(iterate_batches(split.train_x, split.train_y, config.batch_size, seed=config.seed, epoch=0,
                                  augment=spec if spec.active else None))
    images = xb[:count].clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, C] in [0, 1]
    cols = 8
    rows = -(-len(images) // cols)
    h, w, c = images.shape[1:]
    grid = np.ones((rows * (h + 2), cols * (w + 2), c), dtype=np.float32)
    for i, image in enumerate(images):
        r, q = divmod(i, cols)
        grid[r * (h + 2):r * (h + 2) + h, q * (w + 2):q * (w + 2) + w] = image
    if c == 1:
        grid = grid[..., 0]
    return grid, [split.info.classes[int(y)] for y in yb[:count]]


def preview(config: RunConfig | None, split, data_error: str | None) -> None:
    """The column beside the form: what the run will do, before it starts."""
    st.subheader("Before you launch")
    if data_error:
        st.error(escape_md(data_error))
    from app.train.char_train import char_preview, text_file_upload  # characters: what the model will write
    from app.train.text_train import compact_count, csv_upload, text_preview  # text: sentences, not images

    csv_upload(config)
    text_file_upload(config)
    if config is not None and split is not None and split.chars is not None:
        char_preview(config, split)
    elif config is not None and split is not None and split.text is not None:
        text_preview(config, split)
    elif config is not None and split is not None:
        from engine.data.loading import batches_per_epoch
        from engine.optim import schedule_curve

        steps_per_epoch = batches_per_epoch(len(split.train_x), config.batch_size)
        total = steps_per_epoch * config.epochs
        try:
            counts = parameter_counts(config.to_json())
        except ValueError as exc:  # a freeze pattern that matches no weight of this model
            counts = None
            st.error(escape_md(str(exc)))
        params = counts["total"] if counts else 0
        # lines that wrap: three st.metric side by side in this column were cut to "param… 4…" at 1024 px
        exact = f" ({params:,})" if compact_count(params) != f"{params:,}" else ""  # 647k (647,210); 44,426 once
        st.markdown(f"**{compact_count(params)}** parameters{exact}  \n" + transfer_lines(config, counts)
                    + f"**{len(split.train_x):,}** training examples"
                    + (f" ({config.train_per_class} per class)" if config.train_per_class else "")
                    + f"  \n**{total:,}** steps ({steps_per_epoch:,} per epoch x {config.epochs} epochs)")
        steps, lrs = schedule_curve(config, total)
        plotly_chart(lr_schedule_figure(steps, lrs, f"learning rate: {config.schedule}").update_layout(height=240),
                        key="schedule_preview")
        grid, labels = batch_grid(config, split)
        augmented = config.augment_rotate or config.augment_scale or config.augment_translate or config.augment_flip
        st.image(grid, clamp=True, width="stretch",
                 caption=f"first training batch as the model sees it{' (augmented)' if augmented else ''}: "
                         + escape_md(" ".join(labels[:16])) + " ...")  # a caption is markdown


with preview_col:
    preview_slot = st.empty()  # filled here, or below the Start button when the data loads later
    if not later:
        with preview_slot.container():
            preview(config, split, data_error)
    else:  # about the preview's height, so that Start does not jump down the page when the preview arrives
        preview_slot.container(height=PREVIEW_PX, border=False).caption("Loading the preview...")

st.divider()
mode = st.segmented_control("Launch", ["Single run", "Race"], default="Single run", key="launch_mode",
                            help="A race starts one run per optimizer (and per value of one field, and per seed) on identical data.")
configs: list[RunConfig] = []
race_error = None
if mode == "Race" and config is not None:
    r1, r2, r3 = st.columns([3, 3, 2])
    with r1:
        optimizers = st.multiselect("optimizers", OPTIMIZERS, default=["sgd", "momentum", "adam"], key="race_optimizers")
        recommended = st.toggle("use each optimizer's recommended learning rate", value=True, key="race_recommended",
                                help="  ".join(f"{k}: {v:g}" for k, v in RECOMMENDED_LR.items()))
    with r2:
        sweep_fields = ["(none)"] + [f for f in RunConfig().to_dict() if f not in ("seed", "optimizer", "name", "group")]
        field = st.selectbox("also vary one field", sweep_fields, key="race_field")
        values_text = st.text_input("values (comma-separated)", key="race_values", placeholder="e.g. 0.01, 0.1",
                                    disabled=field == "(none)")
    with r3:
        seeds = st.number_input("seeds per setting", 1, 10, 1, key="race_seeds")
        group = st.text_input("race name", value=f"race {time.strftime('%H:%M')}", key="race_group")
    try:
        values = parse_values(field, values_text) if field != "(none)" else []
        configs = expand_race(config, optimizers=optimizers, field=None if field == "(none)" else field,
                              values=values, seeds=int(seeds), recommended_lr=recommended, group=group.strip() or "race")
    except ValueError as exc:
        race_error = str(exc)
        st.error(escape_md(race_error))
    if configs:
        st.caption(f"{len(configs)} runs: " + escape_md(", ".join(c.name for c in configs[:12])) + (" ..." if len(configs) > 12 else ""))
elif config is not None:
    configs = [config]
    if not config.name:  # the store names it; show the name now so a student can find their run in the class's list
        st.caption("It will be named " + escape_md(get_store().unique_name(config, session_actor()))
                   + " (type a name in the form to choose your own).")

start = st.button("Start race" if mode == "Race" else "Start run", type="primary",
                  disabled=not configs or bool(data_error) or race_error is not None, key="start")
if start:
    runner = get_runner()
    ids = []
    with st.spinner("Queuing..."):
        try:
            for c in configs:  # no name typed: the store gives a unique default (see Store.create_run)
                ids.append(runner.submit(c, name=c.name or None, group=c.group).run_id)
        except (CapReached, PermissionDenied, ValueError) as exc:  # a class limit, a source refused: say which
            st.error(escape_md(str(exc)), icon=":material/block:")
    if ids:
        st.session_state[LAUNCHED_KEY] = ids
        st.query_params[LAUNCHED_PARAM] = ",".join(ids)
        st.toast(f"Queued {len(ids)} run{'s' if len(ids) > 1 else ''}")

launched = st.session_state.get(LAUNCHED_KEY) or []
if not launched and st.query_params.get(LAUNCHED_PARAM):  # after a reload: the URL's runs that still exist
    known = set(runs_frame()["run_id"])
    launched = [r for r in st.query_params[LAUNCHED_PARAM].split(",")[:100] if r in known]
if launched:
    from app.charts.chars import is_char_run
    from app.ui.samples import live_samples

    runs_now = runs_frame()
    chars_run_ids = {row["run_id"] for _, row in runs_now[runs_now["run_id"].isin(launched)].iterrows()
                     if is_char_run(row)}
    with launched_slot:
        st.subheader("Launched from this page")
        st.page_link("views/compare.py", label="Open these runs in Compare", icon=":material/stacked_line_chart:",
                     query_params={"runs": ",".join(launched)})
        live_runs_panel(launched, key="train_live")
        char_runs = [r for r in launched if r in chars_run_ids]
        if char_runs:  # character runs: what they write, growing beside their validation loss
            live_samples(char_runs)
        st.divider()

PREVIEW_TICK_S = 0.2  # how soon after the browser has drawn the page it asks for the deferred preview


def load_preview_once_drawn(config: RunConfig) -> None:
    """The first page of a fresh server (see loads_after_start): the data and torch wait until the browser has drawn
    the page. This fragment's timer runs in the browser, so its first tick arrives only once
    the page is on the screen; the page's own run draws nothing here. Done in that run, importing torch held the
    server's GIL while the browser fetched the form's scripts: Start showed 0.6 s later (3.6 s after `streamlit
    run` instead of 3.0 s, benchmarks/cold_paths.py). The tick loads, then reruns the whole page with its preview."""
    calls = []

    @st.fragment(run_every=PREVIEW_TICK_S)
    def when_drawn() -> None:
        calls.append(1)
        if len(calls) == 1:  # the page's own run: the browser has not drawn it yet
            return
        load_split(config)  # cached (run_split): the rerun draws the preview from it at once
        st.rerun()  # torch is imported now: the rerun draws the preview in place (loads_after_start is false)

    when_drawn()


if later:  # the form and Start are on the screen: the data, the preview and torch once the browser drew them
    load_preview_once_drawn(config)
