"""The Run report page under AppTest: a real tiny run trained by real workers, and helper jobs started from the page.

Most tests share one module pool (the conftest `runner`) and one finished tiny run (2 epochs of 300 MNIST
images, layer statistics every 2 steps, norm clipping at 0.5, EMA). The empty and in-progress states use
runs written straight into the store of an isolated home with no worker (TRAINLENS_WORKERS=0).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

import numpy as np
import pytest
from ui_helpers import chart_by_key, chart_traces, decode_array, figure_spec, fresh_app, wait_for

from app.charts import report as rf
from engine import records
from engine.config import RunConfig
from engine.runs.runner import RunHandle

pytestmark = pytest.mark.timeout(300)

PAGE = "views/run_report.py"
TINY = dict(train_limit=300, epochs=2, layer_stats_every=2, clip="norm", clip_value=0.5, ema=True)


def open_report(run_id: str | None = None):
    """The app with the Run report page shown (for `run_id` through the URL, like a link would)."""
    at = fresh_app()
    at.run()
    if run_id:
        at.query_params["run"] = run_id
    at.switch_page(PAGE).run()
    assert_ok(at)
    return at


def assert_ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


BADGE = re.compile(r"^:(\w+)-badge\[(?::material/\w+: )?(.*)\]$")


def badges(at) -> dict[str, str]:
    """{badge text: colour} of the st.badge elements (markdown ':green-badge[:material/icon: Title: pass]')."""
    matches = [BADGE.match(str(markdown.value)) for markdown in at.markdown]
    return {m.group(2): m.group(1) for m in matches if m}


def report_dataframe(at):
    return next(d.value for d in at.dataframe if "f1-score" in d.value.columns)


def url_run(at) -> str:
    value = at.query_params.get("run")
    return value[0] if isinstance(value, list) else value


def page_links(at) -> list[tuple[str, dict]]:
    return [(link.proto.label, parse_qs(link.proto.query_string)) for link in at.get("page_link")]


@pytest.fixture(scope="module")
def tiny_run(runner) -> str:
    run_id = runner.submit(RunConfig(**TINY), name="tiny report").run_id
    assert RunHandle(runner.store, run_id).wait(timeout=240) == "completed", runner.store.get_run(run_id)["error"]
    return run_id


# ---------------------------------------------------------------------------------------------------------------------
def test_without_runs_the_page_points_to_train(monkeypatch):
    monkeypatch.setenv("TRAINLENS_WORKERS", "0")
    at = open_report()
    assert "No runs yet" in at.info[0].value
    assert [label for label, _ in page_links(at)] == ["Go to Train"]


def test_badges_evaluation_and_confusion_cells_of_a_finished_run(runner, tiny_run):
    store = runner.store
    at = open_report(tiny_run)
    assert at.selectbox(key="report_run").value == tiny_run and url_run(at) == tiny_run

    # one badge per stored recipe check, coloured by its status, plus overfit-one-batch marked as not run
    checks = store.get_artifact(tiny_run, "recipe_checks")
    assert {c["name"] for c in checks} >= {"loss_at_init", "input_independent", "clipping", "update_ratio"}
    shown = badges(at)
    for check in checks:
        assert shown[rf.badge_label(check)] == rf.badge_color(check["status"]), (check["name"], shown)
    assert shown["Overfit one batch: skipped"] == "gray"
    captions = texts(at.caption)
    assert sum(c.startswith("Why it matters") for c in captions) == len(checks) + 1
    clipping = next(c for c in checks if c["name"] == "clipping")
    assert rf.check_numbers_text(clipping) in captions  # the numbers behind each badge

    # evaluation: one radio option per stored report; EMA was on, SWA off
    weights = at.radio(key="report_weights")
    assert weights.options == ["best checkpoint", "last weights", "EMA weights"]
    for which in ("last", "best"):
        weights.set_value(which).run()
        assert_ok(at)
        report = store.get_artifact(tiny_run, f"report/{which}")
        table = report_dataframe(at)
        assert list(table["class"]) == report["labels"] + ["accuracy", "micro avg", "macro avg", "weighted avg"]
        accuracy = table[table["class"] == "accuracy"].iloc[0]
        assert accuracy["f1-score"] == f"{report['accuracy']:.4f}" and accuracy["precision"] == ""
        assert report["report_text"].strip() in [t.strip() for t in texts(at.code)]
        heatmap = chart_traces(chart_by_key(at, "report_confusion"))[0]
        assert np.array_equal(decode_array(heatmap["z"]), np.asarray(report["confusion"]))

    at.radio(key="report_normalized").set_value("normalised").run()
    heatmap = chart_traces(chart_by_key(at, "report_confusion"))[0]
    np.testing.assert_allclose(decode_array(heatmap["z"]).astype(float), report["confusion_normalized"])

    # the cell picker starts on the biggest confusion; its images are listed with predicted vs true
    cells = rf.confusion_cells(report)
    picker = at.selectbox(key="report_cell")
    assert picker.value == f"{cells[0][0]},{cells[0][1]}"
    assert len(picker.options) == len(cells)
    listed = [c for c in cells if rf.cell_examples(report, c[0], c[1])]  # the report keeps the 500 surest mistakes
    for true, pred, count in (listed[0], listed[-1]):
        picker.set_value(f"{true},{pred}").run()
        assert_ok(at)
        examples = rf.cell_examples(report, true, pred)
        # the cell's thumbnails (captioned by example index), column by column in the element tree; the section on
        # what the network learned draws images of its own (filters)
        shown_images = [image.captions[0] for image in at.image
                        if image.captions and image.captions[0].startswith("#")]
        assert sorted(shown_images) == sorted(f"#{e['index']}" for e in examples[:24])
        assert any(f"predicted **{report['labels'][pred]}**" in c for c in texts(at.caption))
        outline = figure_spec(chart_by_key(at, "report_confusion"))["layout"]["shapes"]
        assert [(s["x0"], s["y0"]) for s in outline] == [(pred - 0.5, true - 0.5)]
        links = [q for label, q in page_links(at) if label == "Explain"]
        if links:  # the Explain page is registered: one link per image, to that run and validation index
            assert sorted(q["sample"][0] for q in links) == sorted(str(e["index"]) for e in examples[:24])
            assert all(q["run"] == [tiny_run] for q in links)
        else:
            assert any("Explain page" in c for c in texts(at.caption))
        picker = at.selectbox(key="report_cell")
    unlisted = [c for c in cells if c not in listed]
    if unlisted:  # a cell whose mistakes were all too unsure to be kept says so
        picker.set_value(f"{unlisted[0][0]},{unlisted[0][1]}").run()
        assert any(f"None of the {unlisted[0][2]} images" in i for i in texts(at.info))
        assert not [image for image in at.image if image.captions and image.captions[0].startswith("#")]


def test_layer_statistics_histograms_and_clipping(runner, tiny_run):
    store = runner.store
    at = open_report(tiny_run)
    metrics = store.get_metrics(tiny_run)

    ratio = figure_spec(chart_by_key(at, "report_update_ratio"))
    assert [s["y0"] for s in ratio["layout"]["shapes"]] == [-3.0]  # makemore's 1e-3 reference
    names = [t["name"] for t in ratio["data"]]
    assert names and all(n.endswith("weight") for n in names)
    first = chart_traces(chart_by_key(at, "report_update_ratio"))[0]
    logged = store.metric_history(tiny_run, f"update_ratio/{names[0]}")
    assert list(first["x"]) == list(logged["step"]) and np.allclose(first["y"], logged["value"])
    assert {t["name"] for t in chart_traces(chart_by_key(at, "report_act_std"))} == set(rf.layer_names(metrics, "act_std"))
    assert chart_by_key(at, "report_dead_frac") is not None and chart_by_key(at, "report_grad_std") is not None
    at.toggle(key="report_all_params").set_value(True).run()
    all_names = {t["name"] for t in chart_traces(chart_by_key(at, "report_update_ratio"))}
    assert all_names == set(rf.layer_names(metrics, "update_ratio")) and any(n.endswith("bias") for n in all_names)

    # histograms: a slider over the stored hist/<step> artifacts
    steps = records.histogram_steps(store.list_artifacts(tiny_run))
    slider = at.select_slider(key="report_hist_step")
    assert len(steps) >= 2 and slider.options == [str(s) for s in steps] and slider.value == steps[-1]
    for step in (steps[0], steps[-1]):
        at.select_slider(key="report_hist_step").set_value(step).run()
        histogram = store.get_artifact(tiny_run, f"hist/{step}")
        spec = figure_spec(chart_by_key(at, "report_hist_activations"))
        assert f"step {step}" in spec["layout"]["title"]["text"]
        assert [t["name"] for t in spec["data"]] == list(histogram["activations"])
        assert chart_by_key(at, "report_hist_grads") is not None

    # gradient norm before/after clipping and the share of clipped steps
    before, after = chart_traces(chart_by_key(at, "report_grad_norm"))
    norms = store.metric_history(tiny_run, "grad_norm")["value"].to_numpy()
    assert np.allclose(before["y"], norms) and np.allclose(after["y"], np.minimum(norms, 0.5))
    clipped = store.metric_history(tiny_run, "clipped")["value"].to_numpy()
    assert next(m for m in at.metric if m.label == "steps clipped").value == f"{clipped.mean():.0%}"
    assert (clipped.mean() > 0.5) == any("Most steps are clipped" in w for w in texts(at.warning))


def test_lr_finder_job_then_one_click_run_at_the_suggested_lr(runner, tiny_run):
    store = runner.store
    at = open_report(tiny_run)
    assert any("Not run yet" in i for i in texts(at.info))
    at.button(key="report_lr_find").click().run()
    assert_ok(at)
    jobs = store.list_runs(kind="lr_find")
    jobs = jobs[jobs["parent_id"] == tiny_run]
    assert len(jobs) == 1 and jobs["name"].iloc[0] == "lr finder: tiny report"
    job_id = jobs["run_id"].iloc[0]
    assert at.button(key="report_lr_find").disabled  # one sweep at a time

    def finished():
        at.run()
        assert_ok(at)
        return chart_by_key(at, "report_lr_finder")

    chart = wait_for(finished, timeout=120, interval=0.5, what="the LR finder result")
    assert store.get_run(job_id)["status"] == "completed"
    result = store.get_artifact(job_id, "lr_find")
    assert result == store.get_artifact(tiny_run, "lr_find")  # also stored on the run it serves
    spec = figure_spec(chart)
    assert spec["layout"]["xaxis"]["type"] == "log"
    markers = {t["name"] for t in spec["data"][2:]}
    assert markers == {f"{rf.SUGGESTION_TITLES[k]}: lr={s['lr']:.2g}" for k, s in result["suggestions"].items()}

    # one click: a new training run at the suggested lr (2 significant digits), with a one-cycle schedule
    which = at.radio(key="report_lr_choice").value
    lr = float(f"{rf.suggested_lr(result, which):.2g}")
    at.checkbox(key="report_one_cycle").check().run()
    assert at.button(key="report_start_suggested").label == f"Start a run with lr={lr:g}"
    before = set(store.list_runs(kind="train")["run_id"])
    at.button(key="report_start_suggested").click().run()
    assert_ok(at)
    new = store.list_runs(kind="train")
    new = new[~new["run_id"].isin(before)]
    assert len(new) == 1
    new_id = new["run_id"].iloc[0]
    runner.cancel(new_id)  # only the launch is under test: free the worker
    config = store.get_run(new_id)["config"]
    assert (config.lr, config.schedule, config.epochs) == (lr, "onecycle", 2)
    assert config.name == f"tiny report · lr {lr:g} · one-cycle"
    assert ("Compare it with this run", {"runs": [f"{new_id},{tiny_run}"]}) in page_links(at)
    assert ("Open its report", {"run": [new_id]}) in page_links(at)


def test_overfit_one_batch_on_request(runner, tiny_run):
    store = runner.store
    at = open_report(tiny_run)
    at.button(key="report_overfit").click().run()
    jobs = store.list_runs(kind="overfit")
    job_id = jobs[jobs["parent_id"] == tiny_run]["run_id"].iloc[0]

    def finished():
        at.run()
        assert_ok(at)
        return chart_by_key(at, "report_overfit_curve")

    chart = wait_for(finished, timeout=120, interval=0.5, what="the overfit-one-batch result")
    result = store.get_artifact(job_id, "overfit_one_batch")
    curve = chart_traces(chart)[0]["y"]
    assert np.allclose(curve, result["numbers"]["curve"])
    label = rf.badge_label(result)
    assert badges(at)[label] == rf.badge_color(result["status"])  # in its section and in the badge row
    assert "Overfit one batch: skipped" not in badges(at)
    assert result["status"] == "pass", result["message"]  # a convnet with Adam memorises 16 images


def test_selection_defaults_to_the_latest_run_and_follows_the_url(runner, tiny_run):
    at = open_report()
    latest = runner.store.list_runs(kind="train")["run_id"].iloc[0]
    assert at.selectbox(key="report_run").value == latest and url_run(at) == latest
    at.selectbox(key="report_run").set_value(tiny_run).run()
    assert_ok(at)
    assert url_run(at) == tiny_run and at.title[0].value == "Run report"
    at = open_report("no-such-run")
    assert any("no run 'no-such-run'" in w for w in texts(at.warning))
    assert at.selectbox(key="report_run").value == latest


def test_an_old_run_detail_bookmark_opens_the_run_report_of_its_run(monkeypatch):
    monkeypatch.setenv("TRAINLENS_WORKERS", "0")
    from engine.runs.store import Store

    queued = Store().create_run(RunConfig(train_limit=300, epochs=1), name="bookmarked one")
    at = fresh_app()
    at.run()
    at.query_params["run"] = queued
    at.switch_page("views/run_detail.py").run()  # /run_detail?run=... as a bookmark from before the rename
    assert_ok(at)
    assert url_run(at) == queued
    assert any("Waiting for a free worker" in i for i in texts(at.info))  # the Run report's own words for it


def test_states_before_and_without_a_report(monkeypatch):
    """Queued, running, diverged, no layer statistics, a broken artifact: each says what happens next."""
    monkeypatch.setenv("TRAINLENS_WORKERS", "0")  # the page must not start workers for the queued run
    from engine.runs.store import Store

    store = Store()
    queued = store.create_run(RunConfig(train_limit=300, epochs=1), name="queued one")
    at = open_report(queued)
    assert any("Waiting for a free worker" in i for i in texts(at.info))
    assert any("computed when the run finishes" in i for i in texts(at.info))

    # running, first check in, no layer statistics yet; an LR sweep half way through is drawn live
    running = store.create_run(RunConfig(train_limit=300, epochs=1), name="running one")
    store.set_running(running, "no-worker", "cpu")
    store.update_progress(running, 3, 20, 0)
    store.put_artifact(running, "recipe_checks", [{"name": "loss_at_init", "title": "Loss at initialisation",
                                                   "status": "warn", "value": 9.0, "numbers": {"loss": 9.0},
                                                   "message": "far too high", "why": "the hockey stick"}])
    job = store.create_run(RunConfig(), kind="lr_find", parent_id=running, name="lr finder: running one")
    store.set_running(job, "no-worker", "cpu")
    store.log_batch([(job, step, 0, key, value, 0.0) for step in (1, 2, 3)
                     for key, value in (("lr_find_lr", 10.0 ** (step - 8)), ("lr_find_loss", 2.3),
                                        ("lr_find_smoothed", 2.3))])
    at = open_report(running)
    assert badges(at) == {"Loss at initialisation: warn": "orange", "Overfit one batch: skipped": "gray"}
    assert any(c.startswith("Still to come: input-independent baseline") for c in texts(at.caption))
    assert any("computed when the run finishes" in i for i in texts(at.info))
    assert any("first points appear as soon as training starts" in i for i in texts(at.info))
    live = chart_traces(chart_by_key(at, "report_lr_live"))
    assert np.allclose(live[1]["x"], [1e-7, 1e-6, 1e-5])  # the smoothed curve so far
    assert at.button(key="report_lr_find").disabled

    # diverged: the engine's reason; layer statistics off: how to turn them on
    diverged = store.create_run(RunConfig(train_limit=300, epochs=1, layer_stats_every=0), name="diverged one")
    store.update_status(diverged, "diverged", error="loss became nan at step 7")
    at = open_report(diverged)
    assert any("diverged" in i and "loss became nan at step 7" in i for i in texts(at.info))
    assert any("layer_stats_every = 0" in i and "Train page" in i for i in texts(at.info))

    # an artifact the page cannot read is reported in one line; the rest of the page still renders
    store.put_artifact(diverged, "report/last", {"accuracy": 0.5})
    at = open_report(diverged)
    assert any(e.startswith("Could not show the evaluation: KeyError") for e in texts(at.error))
    assert at.button(key="report_lr_find") is not None and at.button(key="report_overfit") is not None
    store.close()
