"""What one student's run may cost: parameters, batch size, CPU cores, GPUs, training examples (an uploaded CSV's
rows too) and minutes of training. Each refusal is one line naming the field, its value and the limit; the defaults
let every shipped lesson run; the teacher changes the limits on the Class page; a run over the time limit is stopped
with the reason.
"""

from __future__ import annotations

import time

import pytest

from engine.config import RunConfig
from engine.records import RunStatus
from engine.runs.access import CapReached, ClassLimits, check_submission, run_examples
from engine.runs.store import Store

from test_class_rules import ANA, TEACH, TINY, store  # noqa: F401 (store: the fixture)


def refusal(store: Store, config: RunConfig) -> str:
    with pytest.raises(CapReached) as refused:
        store.create_run(config, actor=ANA)
    message = str(refused.value)
    assert "\n" not in message and len(message) < 300  # one line
    return message


@pytest.mark.parametrize("changes, expected", [
    ({"hidden": 8192, "depth": 64}, "4,234,887,178 parameters (mlp with hidden=8192, depth=64); the class limit is "
                                    "10,000,000 per run. Make it smaller (lower hidden or depth)"),
    ({"num_cpus": 1024.0}, "num_cpus=1024: the class limit is 2 per run. Lower num_cpus"),
    ({"num_gpus": 64.0}, "num_gpus=64: the class limit is 1 per run"),
    ({"batch_size": 8192}, "batch_size=8192: the class limit is 1024 per run"),
    ({"dataset": "sentiment", "model": "textcnn", "vocab_size": 1_000_000, "embed_dim": 1024},
     "(textcnn with embed_dim=1024, hidden=128, vocab_size=1000000)"),
])
def test_a_costly_run_is_refused_for_a_student_in_one_line(store, changes, expected):
    started = time.perf_counter()
    assert expected in refusal(store, TINY.with_updates(**changes))
    assert time.perf_counter() - started < 30  # counted, never built: 17 GB of weights would take minutes or fail
    assert store.list_runs().empty
    store.create_run(TINY.with_updates(**changes), actor=TEACH)  # the teacher (and the CLI's user) has no caps


def write_csv(path, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text,label\n" + "".join(f"review number {i} was {'good' if i % 2 else 'bad'},{i % 2}\n"
                                             for i in range(rows)))


def test_an_uploaded_csv_counts_against_the_example_limit(store, trainlens_home):
    write_csv(trainlens_home / "data" / "uploads" / "big.csv", 100_001)
    big = RunConfig(dataset="text_csv", model="bow", data_dir="uploads/big.csv", epochs=1)
    assert run_examples(big) == 100_001
    assert "100,001 examples (the rows of your CSV); the class limit is 100,000 per run" in refusal(store, big)
    store.create_run(big.with_updates(train_limit=5_000), actor=ANA)  # capped: fine
    write_csv(trainlens_home / "data" / "uploads" / "small.csv", 300)
    store.create_run(big.with_updates(data_dir="uploads/small.csv"), actor=ANA)
    with pytest.raises(ValueError, match="no column 'words'"):  # a CSV that cannot train is refused at once
        store.create_run(big.with_updates(data_dir="uploads/small.csv", text_column="words"), actor=ANA)


def test_every_shipped_lesson_fits_the_default_cost_limits():
    """The caps on what a run costs (parameters, batch, cores, GPUs, examples) let every lesson's runs through.
    (How many runs and epochs a lesson may start is the class's queue and epoch limits' business.)"""
    from engine import lessons
    from engine.models import estimate_parameters

    found, problems = lessons.load_lessons()
    assert not problems and len(found) >= 11
    roomy = ClassLimits(epochs=1000, queued=1000)  # only the cost caps are under test here
    for lesson in found:
        for _, config in lesson.launch_runs("g")[0]:
            check_submission(ANA, roomy, config, parameters=estimate_parameters(config),
                             examples=run_examples(config), queued=0)


@pytest.mark.parametrize("dataset, model", [("names", "transformer"), ("names", "mlp"), ("reviews", "gru"),
                                            ("reviews", "bigram")])
def test_a_character_run_is_costed_from_bounds_that_hold(dataset, model):
    """A character run's vocabulary is known only once its text is read; the class limits count it at a bound (no
    corpus read whole), which the real vocabulary and training rows never exceed, and name the fields that decide
    its size when it is too big."""
    from engine.data.loading import load_run_split
    from engine.models import count_parameters, estimate_parameters, model_from_config

    config = RunConfig(dataset=dataset, model=model, epochs=1, embed_dim=16, hidden=32, depth=1, block_size=16)
    split = load_run_split(config)
    real = count_parameters(model_from_config(config, 0, split.info.size, len(split.info.classes)))
    assert real <= estimate_parameters(config) and len(split.train_x) <= run_examples(config)
    if dataset == "names":  # a-z and the boundary: the bound is the vocabulary
        assert estimate_parameters(config) == real
    with pytest.raises(CapReached, match="embed_dim=16" if model != "bigram" else "parameters"):
        check_submission(ANA, ClassLimits(parameters=100), config, parameters=estimate_parameters(config),
                         examples=run_examples(config), queued=0)


def test_limits_come_from_the_environment_then_the_teacher(store, monkeypatch):
    monkeypatch.setenv("TRAINLENS_MAX_CPUS", "1.5")
    monkeypatch.setenv("TRAINLENS_MAX_PARAMETERS", "1000")
    assert store.limits().cpus == 1.5 and store.limits().parameters == 1000
    assert "55,050 parameters" in refusal(store, TINY.with_updates(hidden=64))
    store.set_limit("parameters", 100_000, actor=TEACH)
    store.set_limit("gpus", 0, actor=TEACH)  # students off the GPUs
    store.create_run(TINY.with_updates(hidden=64), actor=ANA)
    assert "num_gpus=0.25: the class limit is 0 per run" in refusal(store, TINY.with_updates(hidden=64, num_gpus=0.25))
    for name, bad in (("cpus", "0"), ("gpus", "-1"), ("minutes", "0.5"), ("parameters", "lots")):
        with pytest.raises(ValueError, match=f"class limit {name}="):
            store.set_limit(name, bad, actor=TEACH)


def test_a_run_over_the_time_limit_is_stopped_with_the_reason(store):
    store.set_limit("minutes", 5, actor=TEACH)
    anas, teachers = store.create_run(TINY, actor=ANA), store.create_run(TINY, actor=TEACH)
    store.register_worker("w1", 1, "host", "cpu")
    for _ in range(2):
        run = store.claim_next("w1", "cpu")
        assert run is not None and run["claimed_at"] is not None
    assert not store.heartbeat("w1", "busy", anas, lease=1)["cancel"]  # 0 minutes in: fine
    store.conn.execute("UPDATE runs SET claimed_at=claimed_at-301")  # both have trained for just over 5 minutes
    assert store.heartbeat("w1", "busy", anas, lease=1)["cancel"]  # the worker stops it at its next step
    assert store.get_run(teachers)["error"] is None and not store.cancel_requested(teachers)  # no limit for her
    store.update_status(anas, RunStatus.CANCELLED, fence=(anas, 1))  # what the worker writes once stopped
    run = store.get_run(anas)
    assert run["status"] == RunStatus.CANCELLED and "stopped after 5 minutes of training" in run["error"]
    store.resume_run(anas, actor=ANA)  # a resume continues from its last checkpoint, for another 5 minutes
    assert store.get_run(anas)["error"] is None


def test_the_teacher_changes_the_cost_limits_on_the_class_page(monkeypatch):
    from test_class_pages import CLASS, TEACHER_WORD, signed_in_app

    monkeypatch.setenv("TRAINLENS_CLASS_PASSPHRASE", CLASS)
    monkeypatch.setenv("TRAINLENS_TEACHER_PASSPHRASE", TEACHER_WORD)
    monkeypatch.setenv("TRAINLENS_WORKERS", "0")
    at = signed_in_app("Ms Rivera", TEACHER_WORD)
    at.switch_page("views/classroom.py").run()
    assert not at.exception
    at.number_input(key="limit_parameters").set_value(2.5)  # millions
    at.number_input(key="limit_gpus").set_value(0.5)
    at.number_input(key="limit_minutes").set_value(45)
    at.button(key="FormSubmitter:class_limits-Save limits").click().run()
    assert not at.exception
    limits = Store().limits()
    assert (limits.parameters, limits.gpus, limits.minutes, limits.cpus) == (2_500_000, 0.5, 45, 2.0)


def test_a_student_sees_the_refusal_on_the_train_page_and_the_preview_counts_without_building(monkeypatch):
    from test_class_pages import CLASS, TEACHER_WORD, signed_in_app

    monkeypatch.setenv("TRAINLENS_CLASS_PASSPHRASE", CLASS)
    monkeypatch.setenv("TRAINLENS_TEACHER_PASSPHRASE", TEACHER_WORD)
    monkeypatch.setenv("TRAINLENS_WORKERS", "0")
    at = signed_in_app("Ana")
    at.selectbox(key="cfg_model").select("mlp").run()
    at.number_input(key="cfg_hidden").set_value(8192).run()
    at.number_input(key="cfg_depth").set_value(64).run()
    assert not at.exception
    preview = " ".join(m.value for m in at.markdown)
    assert "**4.2B** parameters (4,234,887,178)" in preview  # counted, not allocated (17 GB)
    at.button(key="start").click().run()
    assert not at.exception
    assert "class limit is 10,000,000 per run" in at.error[0].value and Store().list_runs().empty


def test_a_worker_stops_a_students_run_over_the_time_limit(runner):
    """End to end: a real worker trains a student's run; once it is over the limit (its claim moved 31 minutes back,
    as a test cannot wait 30), the worker stops it within a step or two and the run says why."""
    from ui_helpers import wait_for

    store = runner.store
    run_id = runner.as_actor(ANA).submit(RunConfig(model="mlp", hidden=32, epochs=10, batch_size=16,
                                                   device="cpu")).run_id
    wait_for(lambda: (store.get_run(run_id) or {}).get("step", 0) > 0, 120, what="the run to start training")
    store.conn.execute("UPDATE runs SET claimed_at=claimed_at-31*60 WHERE run_id=?", (run_id,))
    wait_for(lambda: store.get_run(run_id)["status"] != RunStatus.RUNNING, 60, what="the worker to stop it")
    run = store.get_run(run_id)
    assert run["status"] == RunStatus.CANCELLED and "stopped after 30 minutes of training" in run["error"]
    assert run["step"] < run["total_steps"]
