"""One colour per arm across a view: which arm each run belongs to, and the colour every chart and legend of the
view gives it.

An arm is what a view compares: a lesson's variant (or the colour key that variants of one lesson share, such as
"Momentum" at two learning rates), a race's optimizer, a value of Compare's group-by field. A page that knows its
arms puts them in the runs frame's `ARM` column and passes their order (`ChartOptions.arms`) to every chart, so a
chart showing part of the view (a lesson's chart of four variants out of eight) colours each arm as the whole view
does. Without the column a run's arm is its settings but the seed (the runs of one arm differ by seed only), and
arms are ordered by the raced field's value (numerically: lr 0.001 before 0.01), then by their settings.

Arms take the palette in that order (its first colours the most distinct, `app/charts/palette.py`), so up to seven
arms on a chart are clearly apart; the runs of one arm are shades of its colour. Pure functions of the runs frame:
the same view gives the same colours on every re-render and in every session.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from app.charts.palette import arm_colors, family_colors
from app.charts.race import PREFERRED, raced_field
from app.charts.series import group_labels, group_sort_key

ARM = "arm"  # a runs column a page may add: each run's arm
_NOT_A_SETTING = ("cfg.seed", "cfg.name", "cfg.group")


def run_arms(runs_df: pd.DataFrame) -> dict[str, str]:
    """run_id -> arm: the ARM column when the page gave one, else the run's settings but the seed."""
    run_ids = runs_df["run_id"].astype(str)
    if ARM in runs_df.columns:
        return {r: str(a) if pd.notna(a) else r for r, a in zip(run_ids, runs_df[ARM])}
    settings = [c for c in runs_df.columns if c.startswith("cfg.") and c not in _NOT_A_SETTING]
    if not settings:
        return dict(zip(run_ids, run_ids))
    return {r: "|".join(map(str, values)) for r, *values in zip(run_ids, *(runs_df[c] for c in settings))}


def arm_order(runs_df: pd.DataFrame, arms: dict[str, str], given: Sequence[str] = ()) -> list[str]:
    """The view's arms in palette order: `given` first (the page's order), then the others in the runs frame's
    order when the page named arms, else by the raced field's value, then by their settings."""
    order = list(dict.fromkeys(given))
    if ARM in runs_df.columns:
        rest = [arms[str(r)] for r in runs_df["run_id"]]
    else:
        field = _raced(runs_df) if len(set(arms.values())) > 1 else None
        raced = {str(r): v for r, v in zip(runs_df["run_id"], runs_df[f"cfg.{field}"])} if field else {}
        rest = sorted(set(arms.values()), key=lambda arm: (
            group_sort_key(next((raced[r] for r, a in arms.items() if a == arm and r in raced), None)), arm))
    return order + [arm for arm in dict.fromkeys(rest) if arm not in order]


def _raced(runs_df: pd.DataFrame) -> str | None:
    """raced_field, asking the usual raced fields first: every chart of a refresh asks, and a runs frame has a
    column per config field (comparing them all costs milliseconds)."""
    for field in PREFERRED:
        column = f"cfg.{field}"
        if column in runs_df.columns and runs_df[column].astype(str).nunique() > 1:
            return field
    return raced_field(runs_df)


def view_colors(runs_df: pd.DataFrame, given: Sequence[str] = ()) -> dict[str, str]:
    """run_id -> colour for every run of the view: its arm's colour, in shades when the arm has several runs."""
    arms = run_arms(runs_df)
    base = arm_colors(arm_order(runs_df, arms, given))
    return family_colors(list(arms), arms, base)


def group_colors(runs_df: pd.DataFrame, group_by: str, groups: Sequence[str],
                 given: Sequence[str] = ()) -> dict[str, str]:
    """group label -> colour for a chart grouped by `group_by` (one line per group): the colour of the group's arm
    when the page named arms (a lesson's variants sharing a colour key), else the groups, in their order, take the
    palette in order."""
    if ARM not in runs_df.columns:
        return arm_colors(groups)
    arms = run_arms(runs_df)
    base = arm_colors(arm_order(runs_df, arms, given))
    labels = group_labels(runs_df, group_by)
    first_arm = {}
    for run_id, label in labels.items():
        first_arm.setdefault(label, arms[run_id])
    return {group: base[first_arm[group]] for group in groups}
