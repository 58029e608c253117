"""The run colours (app/charts/palette.py, app/charts/arms.py): CIEDE2000 against Sharma, Wu and Dalal's published
test data, a palette whose first seven colours stay clearly apart, and one colour per arm across a view.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from app.charts.arms import ARM, group_colors, view_colors
from app.charts.metrics import ChartOptions, metric_chart
from app.charts.palette import (
    DISTINCT,
    MIN_DISTANCE,
    PALETTE,
    ciede2000,
    color_distance,
    contrast_on_white,
    shade,
    srgb_to_lab,
)

# G. Sharma, W. Wu, E. N. Dalal, "The CIEDE2000 color-difference formula: implementation notes, supplementary test
# data, and mathematical observations", Color Research and Application 30(1), 2005, Table 1: the 34 pairs
# (L1, a1, b1, L2, a2, b2, ΔE00). They exercise the hue-angle cases an implementation gets wrong (mean hues across
# 0°, a zero chroma, hue differences of exactly 180°).
SHARMA_2005 = [
    (50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425),
    (50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615),
    (50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412),
    (50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669),
    (50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461),
    (50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065),
    (50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492),
    (50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977),
    (50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030),
    (50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000),
    (60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644),
    (63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630),
    (61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731),
    (35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645),
    (22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373),
    (36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146),
    (90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441),
    (90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381),
    (6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377),
    (2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082),
]


@pytest.mark.parametrize("pair", SHARMA_2005, ids=[f"pair{i + 1}" for i in range(len(SHARMA_2005))])
def test_ciede2000_matches_sharma_wu_dalal_2005(pair):
    *lab, expected = pair
    assert round(ciede2000(lab[:3], lab[3:]), 4) == expected
    assert ciede2000(lab[3:], lab[:3]) == pytest.approx(ciede2000(lab[:3], lab[3:]), abs=1e-12)  # symmetric


def test_srgb_to_lab_of_reference_colours():
    assert srgb_to_lab("#ffffff") == pytest.approx((100.0, 0.0, 0.0), abs=0.01)
    assert srgb_to_lab("#000000") == pytest.approx((0.0, 0.0, 0.0), abs=0.01)
    assert srgb_to_lab("#ff0000") == pytest.approx((53.24, 80.09, 67.20), abs=0.02)  # sRGB red, D65
    assert color_distance("#0072b2", "#0072b2") == 0.0


def test_the_first_seven_colours_are_clearly_apart_and_none_is_pale():
    for first, second in itertools.combinations(PALETTE[:DISTINCT], 2):
        assert color_distance(first, second) >= MIN_DISTANCE, (first, second)
    for first, second in itertools.combinations(PALETTE, 2):  # the eighth to tenth, for larger views
        assert color_distance(first, second) >= 20, (first, second)
    # the pairs a class could not tell apart fall under the threshold: Okabe-Ito's blue and sky blue, the dark green
    # and bluish green the overfitting lesson showed side by side
    assert color_distance("#0072b2", "#56b4e9") < MIN_DISTANCE and color_distance("#009e73", "#1b7837") < 20
    assert min(contrast_on_white(c) for c in PALETTE) >= 2.2
    assert contrast_on_white("#edc948") < 2.0  # Tableau's pale yellow: what "pale" means here
    assert all(contrast_on_white(shade(c, i, 4)) >= 2.2 for c in PALETTE for i in range(4))


def race_runs(seeds=(0,)) -> pd.DataFrame:
    """The optimizer race's 14 variants (7 optimizers at one shared rate, then each at its own), as the lesson
    view gives them: the arm is the variant label without its "@ rate" part."""
    rows = []
    for shared, optimizer in itertools.product((True, False), ("SGD", "Momentum", "Nesterov", "Adagrad", "RMSprop",
                                                               "Adam", "AdamW")):
        label = f"{optimizer} @ 0.001" if shared else f"{optimizer} @ own rate"
        for seed in seeds:
            rows.append({"run_id": f"{label}/{seed}", "name": label, "status": "completed", ARM: optimizer,
                         "variant": label, "cfg.optimizer": optimizer.lower(), "cfg.seed": seed})
    return pd.DataFrame(rows)


def epoch_rows(runs: pd.DataFrame) -> pd.DataFrame:
    rows = [(r, e, e, "val_acc", 0.5 + 0.1 * e + 0.01 * i, 0.0) for i, r in enumerate(runs["run_id"]) for e in range(3)]
    return pd.DataFrame(rows, columns=["run_id", "step", "epoch", "key", "value", "wall_time"])


def test_an_arm_has_one_colour_in_every_chart_of_a_view():
    runs = race_runs()
    arms = tuple(dict.fromkeys(runs[ARM]))
    metrics = epoch_rows(runs)
    shared, own = runs.iloc[:7], runs.iloc[7:]  # the lesson's two charts show seven variants each
    options = ChartOptions(x_axis="epoch", arms=arms, averaged=False)
    colors = {}
    for part in (shared, own):
        shown = metrics[metrics["run_id"].isin(part["run_id"])]
        for trace in metric_chart(shown, part, "val_acc", options).figure.data:
            arm = part.loc[part["name"] == trace.name, ARM].iloc[0]
            colors.setdefault(arm, set()).add(trace.line.color)
    assert all(len(c) == 1 for c in colors.values()), colors  # Momentum: one colour in both charts
    chart = [c.pop() for c in colors.values()]
    assert len(chart) == 7 and all(color_distance(a, b) >= MIN_DISTANCE for a, b in itertools.combinations(chart, 2))
    # even a chart that shows a part of the arms, in another order, keeps each arm's colour
    reordered = own.iloc[::-1].iloc[:3]
    shown = metrics[metrics["run_id"].isin(reordered["run_id"])]
    again = metric_chart(shown, reordered, "val_acc", options).figure.data
    by_arm = dict(zip(own[ARM], chart))
    assert {t.name: t.line.color for t in again} == {name: by_arm[arm] for name, arm in zip(reordered["name"],
                                                                                             reordered[ARM])}


def test_seeds_are_shades_of_their_arms_colour_and_bands_take_the_arms_colour():
    runs = race_runs(seeds=(0, 1))
    arms = tuple(dict.fromkeys(runs[ARM]))
    colors = view_colors(runs, arms)
    momentum = {colors[r] for r in runs.loc[runs[ARM] == "Momentum", "run_id"]}  # 2 rates x 2 seeds
    assert momentum == {shade(PALETTE[1], i, 4) for i in range(4)}
    groups = group_colors(runs, "variant", ["Momentum @ 0.001", "Momentum @ own rate", "Adam @ 0.001"], arms)
    assert groups == {"Momentum @ 0.001": PALETTE[1], "Momentum @ own rate": PALETTE[1], "Adam @ 0.001": PALETTE[5]}


def test_without_named_arms_a_view_colours_by_settings_in_the_raced_fields_order():
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(6)], "name": [f"run {i}" for i in range(6)],
                         "cfg.lr": [0.1, 0.001, 0.01, 0.1, 0.001, 0.01], "cfg.seed": [0, 0, 0, 1, 1, 1]})
    colors = view_colors(runs)
    assert colors["r1"] == PALETTE[0] and colors["r2"] == PALETTE[1] and colors["r0"] == PALETTE[2]  # lr 0.001 first
    assert colors["r4"] == shade(PALETTE[0], 1, 2)  # the second seed: a darker shade of its arm's colour
    # grouped on Compare: the groups take the palette in their order, the first seven clearly apart
    groups = group_colors(runs, "cfg.lr", ["lr=0.001", "lr=0.01", "lr=0.1"])
    assert list(groups.values()) == list(PALETTE[:3])


def test_colours_do_not_depend_on_the_order_of_the_runs_frame_when_arms_are_derived():
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "name": ["a", "b", "c"],
                         "cfg.optimizer": ["sgd", "adam", "momentum"],
                         "cfg.seed": [0, 0, 0]})
    assert view_colors(runs) == view_colors(runs.iloc[::-1].reset_index(drop=True))
    assert np.unique(list(view_colors(runs).values())).size == 3
