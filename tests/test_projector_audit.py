"""The projector audit: what a teacher projects must be readable. Chromium at 1024x768 in projector mode opens every
page (the Lessons gallery, Train, Runs, Compare, the Run report, Explain) and every shipped lesson after its runs
ended, and one lesson mid-run, and the Train page of a character run (its samples beside its loss), and reads what
it drew (the Class page, in class mode, has its own module: tests/test_projector_audit_class.py):

- overlapping tick labels (the rendered boxes of each axis's tick texts),
- cut text: an element whose text is wider than its box (Streamlit cuts buttons and labels with an ellipsis), a
  table that hides columns behind a horizontal scroll, an axis title that runs past its figure,
- one legend name in two colours on a page, two traces of one chart closer than the palette's minimum distance
  (CIEDE2000, app/charts/palette.py; the shades of one arm's seeds excepted),
- fractional epoch ticks ("1.5"),
- a finished lesson whose answer box is below the first screen, a lesson mid-run whose question, Run button or first
  chart is below it,
- any exception box.

One server and one browser page for the module; each (page, check) is its own test, so a finding names its page and
check, quotes the text, and points at the page's screenshots (first screen and whole page) in a temporary folder.
The lessons run for real (their curves, divergence included, are what is judged) but small: at most `TRAIN_LIMIT`
training examples a run, about three minutes for all fourteen on 2 busy cores. The mid-run lesson is written into the
store (runs marked running by a worker that does not exist, half their rows), so it stays mid-run while it is audited.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ui_helpers import CHROMIUM, server_log, stop_home_workers, streamlit_server

from app.charts.palette import DISTINCT, MIN_DISTANCE, PALETTE, color_distance, shade
from engine import lessons
from engine.records import TERMINAL

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")]

WIDTH, HEIGHT = 1024, 768
TRAIN_LIMIT = 512  # training examples per run: the audit judges the pages, not the training
LOAD_MS = 90_000
TRAIN_S = 300
LESSONS = [lesson.name for lesson in lessons.load_lessons()[0]]
MID_RUN = "momentum"  # the lesson audited while its runs train

CHECKS = ("ticks", "cut", "legend", "colours", "epochs", "exceptions")
# findings on pages whose labels another change fixes (issue 21's second half): reported, not failing, until it lands
NOT_YET: dict[tuple[str, str], str] = {}  # none left: issue 21 fixed the Runs table, Train and the Run report


# ---- what the page drew ----------------------------------------------------------------------------------------
COLLECT_JS = r"""() => {
  const box = e => { const b = e.getBoundingClientRect(); return {l: b.left, r: b.right, t: b.top, b: b.bottom}; };
  const shown = e => { const b = e.getBoundingClientRect(); const s = getComputedStyle(e);
                       return b.width > 0 && b.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const charts = Array.from(main.querySelectorAll('.js-plotly-plot')).filter(shown).map((gd, index) => {
    const holder = gd.closest('[class*="st-key-"]');
    const key = holder ? (Array.from(holder.classList).find(c => c.startsWith('st-key-')) || '').slice(7) : '';
    const texts = sel => Array.from(gd.querySelectorAll(sel)).filter(shown)
                              .map(t => ({text: t.textContent, ...box(t)}));
    const svg = gd.querySelector('svg.main-svg');
    const layout = gd.layout || {};
    const title = a => (((layout[a] || {}).title || {}).text || '');
    const traces = (gd.data || []).map(t => ({
      name: t.name || '', legend: t.showlegend !== false && !!t.name && (t.visible === undefined || t.visible === true),
      color: (t.line && typeof t.line.color === 'string') ? t.line.color
             : (t.marker && typeof t.marker.color === 'string') ? t.marker.color : ''}));
    return {key: key || `chart ${index + 1}`, xticks: texts('.xtick text'), yticks: texts('.ytick text'),
            titles: texts('.g-xtitle text, .g-ytitle text'), xtitle: title('xaxis'), svg: svg ? box(svg) : null,
            plot: gd.querySelector('.nsewdrag') ? box(gd.querySelector('.nsewdrag')) : null, traces};
  });
  const cut = [];
  for (const e of main.querySelectorAll('*')) {
    if (!shown(e) || e.closest('.js-plotly-plot') || !e.textContent.trim()) continue;
    // text cut with an ellipsis (Streamlit's buttons and labels), or its own text clipped by its box
    const s = getComputedStyle(e);
    const own = Array.from(e.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    const clips = s.textOverflow === 'ellipsis' || (own && ['hidden', 'clip'].includes(s.overflowX));
    const text = e.textContent.trim().slice(0, 80);
    if (clips && e.scrollWidth > e.clientWidth + 1 && !cut.includes(text)) cut.push(text);
  }
  for (const frame of main.querySelectorAll('[data-testid="stDataFrame"]')) {
    const scroller = frame.querySelector('.dvn-scroller');
    if (scroller && shown(frame) && scroller.scrollWidth > scroller.clientWidth + 2)
      cut.push(`a table scrolls sideways: ${scroller.clientWidth} of ${scroller.scrollWidth} px shown`);
  }
  const alerts = Array.from(main.querySelectorAll('[data-testid="stAlert"]'));
  const answer = alerts.find(a => a.textContent.includes('Answer.'));
  const start = main.querySelector('.st-key-lesson_start button');
  const exceptions = Array.from(main.querySelectorAll('[data-testid="stException"]'))
                          .map(e => e.textContent.slice(0, 200));
  return {charts, cut, exceptions,
          answer: answer ? box(answer) : null, start: start ? box(start) : null,
          question: main.querySelector('h3') ? box(main.querySelector('h3')) : null,
          scrolled: (document.querySelector('[data-testid="stMain"]') || {}).scrollTop || 0};
}"""
SCROLL_HEIGHT_JS = """() => Math.max(...Array.from(document.querySelectorAll(
  '[data-testid="stMain"], [data-testid="stAppViewContainer"]')).map(e => e.scrollHeight), 0)"""
# [script run over, charts drawn, length of the page's text]
DRAWN_JS = """() => [!document.querySelector('[data-testid="stStatusWidget"]'),
  document.querySelectorAll('.js-plotly-plot .main-svg').length,
  ((document.querySelector('[data-testid="stMain"]') || document.body).innerText || '').length]"""


def _overlap(a: dict, b: dict) -> bool:
    return min(a["r"], b["r"]) - max(a["l"], b["l"]) > 1 and min(a["b"], b["b"]) - max(a["t"], b["t"]) > 1


def _arm_of(color: str) -> str:
    """The palette colour a colour is a shade of (the seeds of one arm), or the colour itself."""
    for base in PALETTE:
        if any(color == shade(base, index, count) for count in range(1, 11) for index in range(count)):
            return base
    return color


def judge(drawn: dict) -> dict[str, list[str]]:
    """Findings per check from what COLLECT_JS read off the page."""
    found: dict[str, list[str]] = {check: [] for check in CHECKS}
    legend_colours: dict[str, set[str]] = {}
    for chart in drawn["charts"]:
        where = f"chart {chart['key']}"
        for axis in ("xticks", "yticks"):
            ticks = chart[axis]
            for a, b in itertools.combinations(ticks, 2):
                if _overlap(a, b):
                    found["ticks"].append(f"{where}: {axis[0]} tick labels {a['text']!r} and {b['text']!r} overlap")
        svg = chart["svg"]
        for title in chart["titles"] if svg else []:
            if title["l"] < svg["l"] - 1 or title["r"] > svg["r"] + 1 or title["t"] < svg["t"] - 1 or \
                    title["b"] > svg["b"] + 1:
                found["cut"].append(f"{where}: axis title {title['text']!r} runs past its figure")
        if chart["xtitle"].startswith("epoch"):
            fractional = [t["text"] for t in chart["xticks"] if not t["text"].replace("−", "-").lstrip("-").isdigit()]
            if fractional:
                found["epochs"].append(f"{where}: epoch ticks {fractional}")
        named = [t for t in chart["traces"] if t["legend"] and t["color"].startswith("#")]
        for trace in named:
            legend_colours.setdefault(trace["name"], set()).add(trace["color"].lower())
        arms = sorted({_arm_of(t["color"].lower()) for t in named})
        floor = MIN_DISTANCE if len(arms) <= DISTINCT else 20.0
        if len(arms) <= len(PALETTE):  # more lines than colours (a layer chart): they cannot all differ
            for a, b in itertools.combinations(arms, 2):
                if color_distance(a, b) < floor:
                    found["colours"].append(f"{where}: {a} and {b} are {color_distance(a, b):.1f} apart "
                                            f"(at least {floor:g} wanted)")
    for name, colours in legend_colours.items():
        if len(colours) > 1:
            found["legend"].append(f"legend name {name!r} in {len(colours)} colours: {sorted(colours)}")
    found["cut"] += [f"cut: {text!r}" for text in drawn["cut"]]
    found["exceptions"] += drawn["exceptions"]
    return found


# ---- the pages, with lessons run small ---------------------------------------------------------------------------
@dataclass
class Audited:
    drawn: dict
    findings: dict[str, list[str]]
    shots: list[Path] = field(default_factory=list)

    def report(self, check: str) -> str:
        return "\n".join(self.findings[check] + [f"screenshot: {path}" for path in self.shots])


def _launch_small(lesson: lessons.Lesson, runner) -> str:
    group = lessons.launch_group(lesson)
    for config in lesson.configs(group):
        small = config.with_updates(train_limit=min(config.train_limit or TRAIN_LIMIT, TRAIN_LIMIT),
                                    train_per_class=min(config.train_per_class, 5))  # the small slice has ~50 a class
        runner.submit(small, name=config.name, group=group)
    return group


def _mid_run_copy(store, lesson: lessons.Lesson, finished_group: str) -> str:
    """A launch of `lesson` stopped halfway: its runs marked running by a worker that does not exist (no reaper
    touches them), each with the first half of the finished launch's rows."""
    group = lessons.launch_group(lesson)
    finished = store.list_runs(group=finished_group)
    for index, row in enumerate(finished.to_dict(orient="records")):
        config = store.get_run(row["run_id"])["config"].with_updates(group=group)
        run_id = store.create_run(config, name=row["name"], group=group)
        store.set_running(run_id, "audit-worker-that-does-not-exist", "cpu")
        metrics = store.get_metrics(row["run_id"])
        half = metrics[metrics["step"] <= metrics["step"].max() * (0.3 + 0.15 * index)]
        store.log_batch([(run_id, int(r.step), int(r.epoch), str(r.key), float(r.value), float(r.wall_time))
                         for r in half.itertuples()])
        store.update_progress(run_id, int(half["step"].max()), int(metrics["step"].max()), int(half["epoch"].max()))
    return group


def _settle(page) -> None:
    """Wait until the page has drawn: its script run over and what it shows unchanged for 2 s (at most 40 s: a live
    page redraws its fragments, the Explain page computes for a while)."""
    page.locator("h1").first.wait_for(timeout=LOAD_MS)
    deadline, last, same = time.monotonic() + 40, None, 0
    while time.monotonic() < deadline and same < 4:
        page.wait_for_timeout(500)
        now = page.evaluate(DRAWN_JS)
        same = same + 1 if now == last and now[0] else 0
        last = now


def _visit(page, url: str, folder: Path, name: str) -> Audited:
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    page.goto(url, timeout=LOAD_MS)
    _settle(page)
    drawn = page.evaluate(COLLECT_JS)
    first = folder / f"{name}-{WIDTH}x{HEIGHT}.png"
    page.screenshot(path=str(first))
    whole = folder / f"{name}-{WIDTH}x{HEIGHT}-whole.png"
    page.set_viewport_size({"width": WIDTH, "height": max(HEIGHT, int(page.evaluate(SCROLL_HEIGHT_JS)))})
    page.wait_for_timeout(800)
    page.screenshot(path=str(whole))
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    return Audited(drawn, judge(drawn), [first, whole])


def _run_lessons(home: Path) -> dict[str, str]:
    """Every lesson run small and finished, then the mid-run copy of one: audit name -> page path."""
    from engine.runs.runner import Runner

    runner = Runner(workers=2)
    try:
        groups = {name: _launch_small(lessons.get_lesson(name), runner) for name in LESSONS}
        deadline = time.monotonic() + TRAIN_S
        while not runner.store.list_runs()["status"].isin(list(TERMINAL)).all():
            assert time.monotonic() < deadline, "the lessons did not finish:\n" + server_log(home)
            time.sleep(1)
    finally:
        runner.shutdown()  # and no worker may take the mid-run lesson's runs
        stop_home_workers(home)
    mid = _mid_run_copy(runner.store, lessons.get_lesson(MID_RUN), groups[MID_RUN])
    runs = runner.store.list_runs()
    members = {group: ",".join(runs.loc[runs["group"] == group, "run_id"]) for group in groups.values()}
    explained = members[groups["explain_cnn"]].split(",")[0]
    counting = runs[runs["group"] == groups["counting_to_attention"]]
    names_run = counting.loc[counting["cfg.model"] == "gru", "run_id"].iloc[0]  # its samples beside its loss
    mid_runs = list(runs.loc[runs["group"] == mid, "run_id"])  # marked running: the live panel with its Cancel
    return {"train": "", "train names": f"?launched={names_run}", "train mid-run": f"?launched={mid_runs[0]}",
            "runs": "runs",
            "compare learning_rate": f"compare?runs={members[groups['learning_rate']]}",
            "compare momentum": f"compare?runs={members[groups['momentum']]}",
            "run_report": f"run_report?run={explained}", "explain": f"explain?run={explained}",
            **{f"lesson {name}": f"lessons?lesson={name}&launch={groups[name]}" for name in LESSONS},
            "lesson momentum mid-run": f"lessons?lesson={MID_RUN}&launch={mid}"}


BEFORE_RUNS = {"gallery": "lessons", "lesson before its runs": "lessons?lesson=learning_rate"}


@pytest.fixture(scope="module")
def audit(browser, tmp_path_factory):
    """Every page and lesson, audited once: name -> Audited."""
    home = tmp_path_factory.mktemp("audit_home")
    folder = tmp_path_factory.mktemp("projector_audit")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TRAINLENS_HOME", str(home))  # the runner here and the server share the store
        with streamlit_server(home, workers=2, extra_env={"TRAINLENS_WARM_POOL": "0"}) as url:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})

            def visit(name: str, path: str) -> Audited:
                address = f"{url}/{path}{'&' if '?' in path else '?'}present=1"
                return _visit(page, address, folder, name.replace(" ", "_"))

            try:
                audited = {name: visit(name, path) for name, path in BEFORE_RUNS.items()}
                audited |= {name: visit(name, path) for name, path in _run_lessons(home).items()}
                yield audited
            finally:
                page.close()


PAGES = [*BEFORE_RUNS, "train", "train names", "train mid-run", "runs", "compare learning_rate", "compare momentum",
         "run_report", "explain", *(f"lesson {name}" for name in LESSONS), "lesson momentum mid-run"]


def _cases():
    for target, check in itertools.product(PAGES, CHECKS):
        reason = NOT_YET.get((target, check))
        marks = [pytest.mark.xfail(strict=False, reason=reason)] if reason else []
        yield pytest.param(target, check, marks=marks, id=f"{target}-{check}".replace(" ", "_"))


@pytest.mark.parametrize(("target", "check"), list(_cases()))
def test_the_projected_page_is_readable(audit, target, check):
    audited = audit[target]
    assert not audited.findings[check], f"{target}, {check}:\n{audited.report(check)}"


@pytest.mark.parametrize("name", LESSONS)
def test_a_finished_lessons_answer_is_on_the_first_screen(audit, name):
    audited = audit[f"lesson {name}"]
    answer = audited.drawn["answer"]
    assert answer is not None, f"lesson {name}: no answer box\n{audited.report('exceptions')}"
    assert answer["b"] <= HEIGHT and audited.drawn["scrolled"] == 0, \
        f"lesson {name}: the answer box ends at {answer['b']:.0f} px, below the first screen ({HEIGHT} px)\n" \
        f"{audited.report('exceptions')}"


def test_a_lesson_mid_run_shows_its_question_button_and_first_chart_on_the_first_screen(audit):
    audited = audit["lesson momentum mid-run"]
    drawn = audited.drawn
    assert drawn["answer"] is None  # not before every run has ended
    assert drawn["question"] and drawn["question"]["b"] <= HEIGHT and drawn["start"] and drawn["start"]["b"] <= HEIGHT
    assert drawn["charts"] and drawn["charts"][0]["plot"], f"no chart\n{audited.report('exceptions')}"
    first = drawn["charts"][0]  # its plot, its x axis's labels and title (the legend may follow below)
    bottom = max([first["plot"]["b"]] + [t["b"] for t in first["xticks"] + first["titles"]])
    assert bottom <= HEIGHT, f"the first chart ends at {bottom:.0f} px, below the first screen ({HEIGHT} px)\n" \
                             f"{audited.report('exceptions')}"
