"""Which launch of a lesson this session sees, and its Run button: the Lessons page's part that knows the class.

On a laptop (no class mode) a lesson shows its latest launch, as before. In a class the teacher's Run button runs the
lesson **for the class**: one set of runs every student's page shows live, so thirty students do not start thirty
copies. A student sees the class's launch by default (or their own, when it is newer), can switch between the two,
and may still start their own where the class limits allow: the button says beforehand, with the reason, when
they do not (the store's own rule, `Store.launch_refusal`; the store enforces it again on the click).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from app.charts.text import escape_md
from app.ui.identity import class_mode, session_actor
from app.ui.state import get_runner, get_store
from engine import lessons
from engine.classroom import TEACHER, Actor

PICK_KEY = "lesson_launch_pick"


@dataclass(frozen=True)
class Launch:
    group: str
    label: str  # what the switch between launches calls it (short: it shares a row): "Class · 10:31", "Mine · 10:40"
    for_class: bool = False  # the teacher ran it for the class
    owner: str = ""
    clock: str = ""  # when it was launched, e.g. "10:31"


def teaches_class(actor: Actor) -> bool:
    return class_mode().enabled and actor.role == TEACHER


def launches_to_show(lesson: lessons.Lesson, runs: pd.DataFrame, actor: Actor) -> list[Launch]:
    """The launches this session chooses between, the default first: in a class, the class's latest launch and the
    user's own latest (the newer of the two first); on a laptop, the lesson's latest launch."""
    groups = set(runs["group"].dropna())
    if not class_mode().enabled:
        latest = lessons.latest_group(groups, lesson.name)
        return [Launch(latest, "latest")] if latest else []
    launches = get_store().launches(lesson.name)
    launches = launches[launches["group"].isin(groups)]  # newest first
    for_class = launches[launches["for_class"]]
    own = launches[(launches["owner_id"] == actor.member_id) & (launches["owner_role"] == actor.role)
                   & ~launches["for_class"]]  # by member id: a newcomer under the same name is someone else
    shown = []
    if not for_class.empty:
        row = for_class.iloc[0]
        clock = _clock(row["created_at"])
        shown.append((row["created_at"],
                      Launch(row["group"], f"Class · {clock}", True, row["owner"], clock)))
    if not own.empty:
        row = own.iloc[0]
        clock = _clock(row["created_at"])
        shown.append((row["created_at"], Launch(row["group"], f"Mine · {clock}", False, row["owner"], clock)))
    return [launch for _, launch in sorted(shown, key=lambda pair: -pair[0])]


def chosen_launch(lesson: lessons.Lesson, runs: pd.DataFrame, actor: Actor, where) -> Launch | None:
    """The launch the page shows: the URL's (`&launch=`, any launch of this lesson: a shared link), else the default
    of `launches_to_show`; with two to choose from, a switch in `where`. The URL keeps a launch chosen on purpose
    (and, on a laptop, the one shown: a reload shows the same runs); in a class the default is left out of it, so
    a reload follows the teacher's next launch for the class."""
    groups = set(runs["group"].dropna())
    wanted = st.query_params.get("launch")
    choices = launches_to_show(lesson, runs, actor)
    if wanted in groups and lessons.is_lesson_group(wanted, lesson.name):
        shown = next((launch for launch in choices if launch.group == wanted), Launch(wanted, "shared"))
    else:
        shown = choices[0] if choices else None
    if len(choices) > 1:
        labels = {launch.label: launch for launch in choices}
        current = next((label for label, launch in labels.items() if shown and launch.group == shown.group), None)
        picked = where.segmented_control("Showing", list(labels), default=current, key=PICK_KEY,
                                         label_visibility="collapsed",
                                         help="the runs the teacher started for the class, or your own")
        if picked in labels and (shown is None or labels[picked].group != shown.group):
            shown = labels[picked]
            st.query_params["launch"] = shown.group
    if shown is not None and not class_mode().enabled:
        st.query_params["launch"] = shown.group
    return shown


def run_button(lesson: lessons.Lesson, where, *, key: str, again: bool, class_launch: bool = False,
               short: bool = False) -> None:
    """The button that runs `lesson` (in `where`, a column), and under it why a student may not, when they may not.

    The teacher's runs it for the class; a student's starts their own (`class_launch`: the page shows the class's)."""
    actor = session_actor()
    teacher = teaches_class(actor)
    every_run = [config for _, config in lesson.launch_runs()[0]]  # its pretraining stages too
    refusal = get_store().launch_refusal(every_run, actor) if actor.is_student else None
    if teacher:
        label = "Run for class" if short else "Run for the class"  # again: the same words, a secondary button
    elif class_launch:
        label = "Run my own"
    else:
        label = "Run" if short else ("Run it again" if again else "Run this lesson")
    help_text = refusal or ("every student's Lessons page shows these runs live" if teacher else
                            "run every run of this lesson now and open its page")
    if where.button(label, icon=":material/play_arrow:", key=key, type="secondary" if again else "primary",
                    disabled=refusal is not None, help=help_text, width="stretch"):
        start(lesson, for_class=teacher)
    if refusal is not None:
        where.caption(f":material/block: {escape_md(refusal)}")


def start(lesson: lessons.Lesson, for_class: bool = False) -> None:
    try:
        group, _ = lessons.launch(lesson, get_runner(), for_class=for_class)
    except (ValueError, PermissionError) as exc:  # a class limit: the whole lesson is refused, with the reason
        st.error(escape_md(str(exc)), icon=":material/block:")
        return
    st.session_state.pop(PICK_KEY, None)
    st.query_params.update({"lesson": lesson.name, "launch": group})
    st.rerun()


def _clock(when: float) -> str:
    import time

    return time.strftime("%H:%M", time.localtime(float(when)))
