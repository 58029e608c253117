"""Lessons page: the gallery of ready-made classroom lessons (lessons/*.toml, see engine/lessons.py) and, with
`?lesson=NAME` in the URL, one lesson's view: the question first, one click to run it as one group, its live charts,
and once the runs have ended the answer computed from their results, above the charts where the class sees it
without scrolling, with each claim shown holding or not. Each variant keeps one colour on every chart (by its
colour key: the race's "Momentum" at two rates is one colour, app/charts/arms.py).

A launch is found again from the URL (`&launch=GROUP`) or, without one, as the lesson's latest launch in the store,
so a reload or a shared link shows the same runs; in a class, the launch the teacher ran for the class, or the
student's own (app/lessons/launches.py).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.charts.arms import ARM
from app.charts.metrics import ChartOptions, metric_chart
from app.charts.per_layer import per_layer_figure
from app.charts.series import chart_keys
from app.charts.text import escape_md
from app.lessons.launches import chosen_launch, run_button
from app.ui.identity import session_actor
from app.ui.live import live_fragment, status_text
from app.ui.presentation import plotly_chart
from app.ui.state import get_store, run_metric_keys, run_metrics, runs_frame
from engine import lessons
from engine.lesson_answer import METRIC_WORDS, STAT_WORDS
from engine.records import ACTIVE, LM_BASELINES, TERMINAL, UNSUCCESSFUL

PAGE = "views/lessons.py"
VARIANT = "variant"  # the column the lesson's charts group by
# a little lower than other pages' charts: at 1024x768 on a projector the question, the Run button and the first
# chart's plot fit the first screen while the runs train; a legend of more than three entries takes a row each at
# projector size on a half-width chart, so the chart grows by as much (its plot keeps its height)
CHART_PX = 350
LEGEND_ROW_PX = 30


def gallery(found: list[lessons.Lesson], problems: dict[str, str]) -> None:
    st.title("Lessons")
    st.markdown("Ready-made classroom experiments: a question, the runs that answer it, and the answer checked on "
                "the results. One click runs a lesson; its page can be shared as a link.")
    columns = st.columns(2)
    for index, lesson in enumerate(found):
        with columns[index % 2].container(border=True):
            st.markdown(f"#### {index + 1}. {escape_md(lesson.title)}")
            st.markdown(escape_md(lesson.question))
            runs = lesson.run_count
            st.caption(f"{runs} run{'s' if runs > 1 else ''} · about {lesson.minutes:g} min on 2 CPU cores")
            open_col, run_col = st.columns([1, 1.6])  # room for the teacher's "Run for class" at 1024 px
            open_col.page_link(PAGE, label="Open", icon=":material/school:", query_params={"lesson": lesson.name})
            run_button(lesson, run_col, key=f"run_{lesson.name}", again=False, short=True)
    for file_name, problem in problems.items():
        st.warning(f"Lesson file {escape_md(file_name)} could not be read: {escape_md(problem)}",
                   icon=":material/warning:")
    st.caption(f"Write your own: copy a file of lessons/ into {escape_md(lessons.lessons_home_hint())} and edit it.")


def lesson_view(lesson: lessons.Lesson) -> None:
    runs = runs_frame()
    actor = session_actor()
    count = lesson.run_count
    # one compact row above the title: on a projector the question and the charts need the first screen
    # the Run button's column fits "Run for the class" at 1024 px in projector mode
    back_col, button_col, note_col = st.columns([1.2, 1.6, 2.6], vertical_alignment="center")
    back_col.page_link(PAGE, label="All lessons", icon=":material/arrow_back:", query_params={})
    shown = chosen_launch(lesson, runs, actor, note_col)
    group = shown.group if shown else None
    run_button(lesson, button_col, key="lesson_start", again=bool(group),
               class_launch=bool(shown and shown.for_class and actor.is_student))
    note_col.caption(f"{count} run{'s' if count > 1 else ''} on identical data"
                     + (f", {lesson.seeds} seeds each" if lesson.seeds > 1 else "")
                     + f" · about {lesson.minutes:g} min on 2 CPU cores"
                     + (f" · the class's runs, started by {escape_md(shown.owner)} at {shown.clock}"
                        if shown and shown.for_class else ""))
    st.title(escape_md(lesson.title))  # a file's text: an image link in it must not be fetched by every viewer
    st.markdown(f"### {escape_md(lesson.question)}")
    if not group:
        look_for(lesson, expanded=True)
        return
    run_ids = list(runs.loc[runs["group"] == group, "run_id"])
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
    color_keys = lesson.color_keys()  # one colour per key on every chart, whichever variants a chart shows
    selected[ARM] = selected[VARIANT].map(lambda label: color_keys.get(label, label))
    arms = tuple(dict.fromkeys(color_keys.values()))
    ended = int(selected["status"].isin(list(TERMINAL)).sum())
    active = bool(selected["status"].isin(list(ACTIVE)).any())
    if active:
        st.progress(ended / len(selected), text=f"{ended} of {len(selected)} runs finished · the charts grow live; "
                                                "the answer appears here when every run has finished")
    else:  # the answer above the charts: on a projector the class reads it without scrolling
        answer(lesson, group)
    columns = st.columns(2)
    run_ids = list(selected["run_id"])
    for index, chart in enumerate(lesson.charts):
        shown = selected[selected[VARIANT].isin(chart.only)] if chart.only else selected
        if chart.per_layer:  # one line per variant across the layers, at the latest sampled step
            shown_ids = list(shown["run_id"])
            keys = sorted(k for k in run_metric_keys(shown_ids, runs) if k.startswith(f"{chart.per_layer}/"))
            metrics = run_metrics(shown_ids, runs, keys) if keys else pd.DataFrame(columns=["run_id", "step", "key"])
            figure = per_layer_figure(metrics, shown, chart.per_layer, VARIANT, chart.log_y, chart.layers, arms)
        else:
            metrics = run_metrics(list(shown["run_id"]), runs, chart_keys(list(chart.keys), chart.x))
            options = ChartOptions(x_axis=chart.x, smoothing=chart.smoothing, log_y=chart.log_y,
                                   group_by=VARIANT if lesson.seeds > 1 else None, arms=arms)
            figure = metric_chart(metrics, shown, list(chart.keys) if len(chart.keys) > 1 else chart.keys[0],
                                  options).figure
            if lesson.samples and "val_loss" in chart.keys:  # character runs: the counting baselines to beat
                from app.charts.chars import with_baselines

                with_baselines(figure, get_store().get_artifact(run_ids[0], LM_BASELINES))
            entries = sum(1 for trace in figure.data if trace.showlegend is not False and trace.name)
            figure.update_layout(height=CHART_PX + LEGEND_ROW_PX * max(0, entries - 3))
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
        if row.status not in ACTIVE and isinstance(row.error, str) and row.error:
            st.caption(f"**{escape_md(row.name)}** {status_text(row.status)}: {escape_md(row.error)}")
    st.page_link("views/compare.py", label="Open these runs in Compare", icon=":material/stacked_line_chart:",
                 query_params={"runs": ",".join(run_ids), "x": lesson.charts[0].x if lesson.charts else "step"})
    if lesson.explain:
        explain_links(selected)


def answer(lesson: lessons.Lesson, group: str) -> None:
    """The answer in words (the winner first), every variant's number, and the expected outcome checked."""
    result = lessons.outcome(lesson, lessons.results_from_store(get_store(), lesson, group))
    box = st.success if result.holds else st.warning
    box(f"**Answer.** {escape_md(result.answer)}", icon=":material/lightbulb:")
    if len(result.standings) > 1:
        words = f"{STAT_WORDS[lesson.answer_stat]} {METRIC_WORDS.get(lesson.answer_metric, lesson.answer_metric)}"
        ranked = "The compared variants'" if lesson.answer_among else "Every variant's"
        with st.expander(f"{ranked} {words}", icon=":material/format_list_numbered:"):
            texts = [s.text for s in result.standings]  # a tie shares its place: 1, 1, 3
            st.markdown(f"| | variant | {escape_md(words)} |\n|---:|---|---:|\n" + "\n".join(
                f"| {texts.index(s.text) + 1} | {escape_md(s.label)} | "
                f"{escape_md(' '.join(filter(None, (s.text, s.when))))} |" for s in result.standings))
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
    with st.container(horizontal=True, gap="medium"):  # each link as wide as its label: never cut
        for sample in (0, 1, 2, 3):
            st.page_link("views/explain.py", label=f"validation digit #{sample}", icon=":material/visibility:",
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
