"""Scripts as real processes (issue 24): the MNIST example trained to completion and seen by `trainlens show` and
on Compare next to an engine run; a script killed with `kill -9` shown interrupted within 10 s; the end of a
script (normal exit, an uncaught exception) recorded without `finish()`; a fork after `init`; and `import
trainlens` costing only the standard library. Every test starts a process: the slow tier.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import engine_env
from ui_helpers import chart_by_key, chart_traces, fresh_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parent.parent


def run_script(home: Path, code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    path = home / "script.py"
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return subprocess.run([sys.executable, str(path), *args], cwd=home, env=engine_env(home), capture_output=True,
                          text=True, timeout=timeout)


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=home, env=engine_env(home),
                          capture_output=True, text=True, timeout=120)


def only_run(home: Path) -> dict:
    listing = json.loads(cli(home, "runs", "--json").stdout)
    assert len(listing) == 1, listing
    return listing[0]


def test_the_mnist_example_trains_to_completion_and_its_curves_sit_next_to_an_engine_run(trainlens_home):
    import time as clock

    done = subprocess.run([sys.executable, str(ROOT / "examples" / "mnist_summarywriter.py"), "--quick"],
                          cwd=trainlens_home.parent, env=engine_env(trainlens_home), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    run_id = only_run(trainlens_home)["run_id"]
    shown = cli(trainlens_home, "show", run_id)
    assert f"runs/mnist_summarywriter ({run_id}): completed" in shown.stdout, shown.stdout + shown.stderr
    assert "val_acc" in shown.stdout and "batch_size=64" in shown.stdout

    from engine.config import RunConfig
    from engine.runs.store import Store

    store = Store()
    engine_id = store.create_run(RunConfig(epochs=1), name="engine convnet")
    store.update_status(engine_id, "completed")
    store.log_batch([(engine_id, s, 0, "loss", 2.0 / (s + 1), clock.time()) for s in range(10)]
                    + [(engine_id, 9, 0, "val_acc", 0.8, clock.time())])
    at = fresh_app()
    at.run()
    at.query_params["runs"] = f"{engine_id},{run_id}"
    at.switch_page("views/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    for chart in ("chart_0", "chart_1"):  # training loss per step, validation accuracy (one point each: markers)
        assert {"engine convnet", "runs/mnist_summarywriter"} <= {t.get("name") for t in chart_traces(chart_by_key(at, chart))}


KILLABLE = """
    import sys, time
    import torch
    import trainlens

    torch.manual_seed(0)
    x, y = torch.randn(256, 20), torch.randint(0, 3, (256,))  # data the test makes
    model = torch.nn.Linear(20, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run = trainlens.init(name="to be killed", config={"lr": 0.1})
    print(run.run_id, flush=True)
    step = 0
    while True:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        run.log({"loss": loss.item()}, step=step)
        step += 1
        time.sleep(0.01)
"""


def test_kill_9_of_a_script_mid_run_shows_interrupted_within_10_s(trainlens_home):
    trainlens_home.mkdir(parents=True, exist_ok=True)
    (trainlens_home / "script.py").write_text(textwrap.dedent(KILLABLE))
    process = subprocess.Popen([sys.executable, str(trainlens_home / "script.py")], cwd=trainlens_home,
                               env=engine_env(trainlens_home), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    try:
        run_id = process.stdout.readline().strip()
        assert run_id, "the script did not start its run"
        wait_for(lambda: "running" in cli(trainlens_home, "show", run_id).stdout.splitlines()[0]
                 and cli(trainlens_home, "metrics", run_id).stdout.count("loss"), 60, what="the first rows")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        killed_at = time.monotonic()
        first_line = wait_for(lambda: next((line for line in [cli(trainlens_home, "show", run_id).stdout.splitlines()[0]]
                                            if "interrupted" in line), None), 10, interval=0.2,
                              what="the run shown interrupted")
        assert time.monotonic() - killed_at < 10
        assert "stopped at step" in first_line
    finally:
        if process.poll() is None:
            process.kill()


def test_a_script_that_ends_without_finish_is_completed_and_one_that_raises_is_failed(trainlens_home):
    done = run_script(trainlens_home, """
        import trainlens
        run = trainlens.init(name="no finish")
        for step in range(50):
            run.log({"loss": 1.0 / (step + 1)})
    """)
    assert done.returncode == 0, done.stderr
    assert only_run(trainlens_home)["status"] == "completed"
    crashed = run_script(trainlens_home / "second", """
        import trainlens
        writer = trainlens.SummaryWriter("runs/crash")
        writer.add_scalar("loss", 1.0, 0)
        raise RuntimeError("CUDA out of memory (pretend)")
    """)
    assert crashed.returncode == 1 and "RuntimeError: CUDA out of memory (pretend)" in crashed.stderr  # the traceback
    run = only_run(trainlens_home / "second")
    assert run["status"] == "failed"
    shown = cli(trainlens_home / "second", "show", run["run_id"]).stdout
    assert "failed - RuntimeError: CUDA out of memory (pretend)" in shown


def test_a_script_that_calls_sys_exit_with_a_failing_status_is_failed(trainlens_home):
    for folder, call, status in (("one", "sys.exit(3)", "failed"), ("text", 'sys.exit("no data left")', "failed"),
                                 ("zero", "sys.exit(0)", "completed")):
        ended = run_script(trainlens_home / folder, f"""
            import sys
            import trainlens
            run = trainlens.init(name="exits")
            for step in range(5):
                run.log({{"loss": 1.0 / (step + 1)}})
            {call}
        """)
        run = only_run(trainlens_home / folder)
        assert run["status"] == status, (call, run, ended.stderr)
        if status == "failed":
            shown = cli(trainlens_home / folder, "show", run["run_id"]).stdout
            assert "the script exited" in shown and ("status 3" in shown or "no data left" in shown), shown


def test_a_process_forked_after_init_does_not_write_its_parents_run(trainlens_home):
    done = run_script(trainlens_home, """
        import os, sys
        import trainlens
        run = trainlens.init(name="parent")
        run.log({"loss": 1.0}, step=0)
        child = os.fork()
        if child == 0:
            try:
                run.log({"loss": 99.0}, step=1)
            except trainlens.TrainLensError as exc:
                print("child refused:", exc, flush=True)
            os._exit(0)
        os.waitpid(child, 0)
        child = os.fork()
        if child == 0:
            sys.exit(0)  # a child that exits normally runs atexit: it must not finish the parent's run
        os.waitpid(child, 0)
        run.log({"loss": 0.5}, step=2)
        print("parent status after the children:", run.store.get_run(run.run_id)["status"], flush=True)
        run.finish()
    """)
    assert done.returncode == 0, done.stderr
    assert "child refused: trainlens: this process" in done.stdout and "was forked from" in done.stdout
    assert "parent status after the children: running" in done.stdout
    run = only_run(trainlens_home)
    assert run["status"] == "completed"
    rows = json.loads(cli(trainlens_home, "metrics", run["run_id"], "--json").stdout)
    assert [(r["step"], r["value"]) for r in rows] == [(0, 1.0), (2, 0.5)]


def test_import_trainlens_costs_only_the_standard_library():
    code = "import json, sys\nimport trainlens\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    modules = set(json.loads(done.stdout))
    assert "trainlens" in modules
    assert not {m for m in modules if m.split(".")[0] in ("torch", "numpy", "pandas", "streamlit", "engine")}
