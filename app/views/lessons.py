"""Lessons page: the gallery of ready-made classroom lessons (lessons/*.toml, see engine/lessons.py) and, with
`?lesson=NAME` in the URL, one lesson's view: the question first, one click to run it as one group, its live charts,
and once the runs have ended the answer computed from their results with each claim shown holding or not.

A launch is found again from the URL (`&launch=GROUP`) or, without one, as the lesson's latest launch in the store,
so a reload or a shared link shows the same runs.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.charts.metrics import ChartOptions, metric_chart, per_layer_figure
from app.charts.series import chart_keys
from app.charts.text import escape_md
from app.ui.live import live_fragment, status_text
from app.ui.presentation import plotly_chart
from app.ui.state import get_runner, get_store, run_metric_keys, run_metrics, runs_frame
from engine import lessons
from engine.records import ACTIVE, LM_BASELINES, TERMINAL, UNSUCCESSFUL

PAGE = "views/lessons.py"
VARIANT = "variant"  # the column the lesson's charts group and colour by


def gallery(found: list[lessons.Lesson], problems: dict[str, str]) -> None:
    st.title("Lessons")
    st.markdown("Ready-made classroom experiments: a question, the runs that answer it, and the answer checked on "
                "the results. One click runs a lesson; its page can be shared as a link.")
    columns = st.columns(2)
    for index, lesson in enumerate(found):
        with columns[index % 2].container(border=True):
            st.markdown(f"#### {index + 1}. {escape_md(lesson.title)}")
            st.markdown(escape_md(lesson.question))
            runs = len(lesson.variants) * lesson.seeds
            st.caption(f"{runs} run{'s' if runs > 1 else ''} · about {lesson.minutes:g} min on 2 CPU cores")
            open_col, run_col = st.columns(2)
            open_col.page_link(PAGE, label="Open", icon=":material/school:", query_params={"lesson": lesson.name})
            if run_col.button("Run", icon=":material/play_arrow:", key=f"run_{lesson.name}", type="primary",
                              help="run every run of this lesson now and open its page"):
                start(lesson)
    for file_name, problem in problems.items():
        st.warning(f"Lesson file {escape_md(file_name)} could not be read: {escape_md(problem)}",
                   icon=":material/warning:")
    st.caption(f"Write your own: copy a file of lessons/ into {escape_md(lessons.lessons_home_hint())} and edit it.")


def start(lesson: lessons.Lesson) -> None:
    try:
        group, _ = lessons.launch(lesson, get_runner())
    except (ValueError, PermissionError) as exc:  # a class limit: the whole lesson is refused, with the reason
        st.error(escape_md(str(exc)), icon=":material/block:")
        return
    st.query_params.update({"lesson": lesson.name, "launch": group})
    st.rerun()


def lesson_view(lesson: lessons.Lesson) -> None:
    runs = runs_frame()
    groups = set(runs["group"].dropna())
    wanted = st.query_params.get("launch")
    group = wanted if wanted in groups and lessons.is_lesson_group(wanted, lesson.name) else (
        lessons.latest_group(groups, lesson.name))
    count = len(lesson.variants) * lesson.seeds
    # one compact row above the title: on a projector the question and the charts need the first screen
    back_col, button_col, note_col = st.columns([1.3, 1.2, 3], vertical_alignment="center")
    back_col.page_link(PAGE, label="All lessons", icon=":material/arrow_back:", query_params={})
    if button_col.button("Run it again" if group else "Run this lesson", type="secondary" if group else "primary",
                         key="lesson_start"):
        start(lesson)
    note_col.caption(f"{count} run{'s' if count > 1 else ''} on identical data"
                     + (f", {lesson.seeds} seeds each" if lesson.seeds > 1 else "")
                     + f" · about {lesson.minutes:g} min on 2 CPU cores")
    st.title(lesson.title)
    st.markdown(f"### {escape_md(lesson.question)}")
    if not group:
        look_for(lesson, expanded=True)
        return
    run_ids = list(runs.loc[runs["group"] == group, "run_id"])
    st.query_params.update({"lesson": lesson.name, "launch": group})
    live_fragment("lesson_live", lambda now: live_panel(lesson, group, now), run_ids, every=1.5)
    look_for(lesson, expanded=False)


def look_for(lesson: lessons.Lesson, expanded: bool) -> None:
    with st.expander("What to look for", expanded=expanded, icon=":material/visibility:"):
        st.markdown("\n".join(f"- {escape_md(item)}" for item in lesson.look_for))


def live_panel(lesson: lessons.Lesson, group: str, runs: pd.DataFrame) -> None:
    selected = runs[runs["group"] == group].copy()
    if selected.empty:
        st.info("This lesson's runs were deleted. Run it again.")
        return
    selected[VARIANT] = [lesson.variant_of(str(name)) or str(name) for name in selected["name"]]
    order = {variant.label: i for i, variant in enumerate(lesson.variants)}
    selected = selected.sort_values(VARIANT, key=lambda s: s.map(order), kind="stable")
    ended = int(selected["status"].isin(list(TERMINAL)).sum())
    active = bool(selected["status"].isin(list(ACTIVE)).any())
    if active:  # once every run has ended, the answer below says so
        st.progress(ended / len(selected), text=f"{ended} of {len(selected)} runs finished · the charts grow live")
    columns = st.columns(2)
    run_ids = list(selected["run_id"])
    for index, chart in enumerate(lesson.charts):
        shown = selected[selected[VARIANT].isin(chart.only)] if chart.only else selected
        if chart.per_layer:  # one line per variant across the layers, at the latest sampled step
            shown_ids = list(shown["run_id"])
            keys = sorted(k for k in run_metric_keys(shown_ids, runs) if k.startswith(f"{chart.per_layer}/"))
            metrics = run_metrics(shown_ids, runs, keys) if keys else pd.DataFrame(columns=["run_id", "step", "key"])
            figure = per_layer_figure(metrics, shown, chart.per_layer, VARIANT, chart.log_y, chart.layers)
        else:
            metrics = run_metrics(list(shown["run_id"]), runs, chart_keys(list(chart.keys), chart.x))
            options = ChartOptions(x_axis=chart.x, smoothing=chart.smoothing, log_y=chart.log_y,
                                   group_by=VARIANT if lesson.seeds > 1 else None)
            figure = metric_chart(metrics, shown, list(chart.keys) if len(chart.keys) > 1 else chart.keys[0],
                                  options).figure
            if lesson.samples and "val_loss" in chart.keys:  # character runs: the counting baselines to beat
                from app.charts.chars import with_baselines

                with_baselines(figure, get_store().get_artifact(run_ids[0], LM_BASELINES))
        with columns[index % 2]:
            st.markdown(f"**{escape_md(chart.title)}**")
            plotly_chart(figure, key=f"lesson_chart_{index}")
            if chart.note:
                st.caption(escape_md(chart.note))
    if lesson.samples:  # character runs: what each variant writes, side by side (the first seed's run)
        from app.ui.samples import samples_side_by_side

        st.markdown("**What each model writes** (its newest samples, 12 of 20)")
        samples_side_by_side(selected.drop_duplicates(VARIANT), VARIANT)
    for row in selected.itertuples():
        if row.status in UNSUCCESSFUL and isinstance(row.error, str) and row.error:
            st.caption(f"**{escape_md(row.name)}** {status_text(row.status)}: {escape_md(row.error)}")
    answer(lesson, group, active)
    st.page_link("views/compare.py", label="Open these runs in Compare", icon=":material/stacked_line_chart:",
                 query_params={"runs": ",".join(run_ids), "x": lesson.charts[0].x if lesson.charts else "step"})
    if lesson.explain:
        explain_links(selected)


def answer(lesson: lessons.Lesson, group: str, active: bool) -> None:
    if active:
        st.info("The answer appears here when every run has finished.", icon=":material/hourglass_top:")
        return
    result = lessons.outcome(lesson, lessons.results_from_store(get_store(), lesson, group))
    box = st.success if result.holds else st.warning
    box(f"**Answer.** {escape_md(result.answer)}", icon=":material/lightbulb:")
    lines = []
    for check in result.checks:
        icon = {True: ":green[:material/check_circle:] holds", False: ":red[:material/cancel:] does not hold",
                None: ":gray[:material/help:] undecided"}[check.holds]
        lines.append(f"- {icon}: {escape_md(check.claim.text)} ({escape_md(check.detail)})")
    st.markdown("**Expected outcome, checked on these runs**\n" + "\n".join(lines))


def explain_links(selected: pd.DataFrame) -> None:
    done = selected[selected["status"].isin(list(TERMINAL)) & ~selected["status"].isin(list(UNSUCCESSFUL))]
    if done.empty:
        return
    run_id = str(done["run_id"].iloc[0])
    st.markdown("**Explain it**: open the trained CNN on a validation digit (Saliency and Integrated Gradients are "
                "in the method list; the model-randomisation sanity check is at the bottom of the page).")
    columns = st.columns(4)
    for index, sample in enumerate((0, 1, 2, 3)):
        columns[index].page_link("views/explain.py", label=f"validation digit #{sample}", icon=":material/visibility:",
                                 query_params={"run": run_id, "sample": str(sample)})


found, problems = lessons.load_lessons()
by_name = {lesson.name: lesson for lesson in found}
wanted = st.query_params.get("lesson")
if wanted in by_name:
    lesson_view(by_name[wanted])
else:
    if wanted:
        st.warning(f"No lesson named {escape_md(wanted)}; here are all of them.", icon=":material/warning:")
    gallery(found, problems)
