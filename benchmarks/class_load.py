"""Benchmark: the dashboard server under a simulated class.

N students (default 30), each with two browser tabs open, the lesson's Compare view of 8 running runs and their
own Runs page, against one `streamlit run` server in class mode. Each tab is a websocket client speaking
Streamlit's own protocol (the BackMsg/ForwardMsg protobufs a browser sends and receives): it loads its page signed
in with a seat token, then reruns each live fragment at the interval the server asked for (`auto_rerun`), as the
browser's timer does, and times each rerun from request to `script_finished`. No browser runs, so the figures
are the server's, not Chromium's.

The 8 runs are simulated by a writer in this process that logs what a real run logs (loss, lr, gradient norm,
examples every step at 20 steps/s per run; validation metrics every 200 steps) under a registered worker, so the
server sees live runs without 8 trainings taking the CPU away from it. This measures the refresh work.

Reports: server CPU (cores, averaged over the measured window, after --warmup seconds), server memory (RSS), and
refresh latency per view (p50, p95), refreshes per second (and so how often each tab refreshed: the pages ask for
1.5 s on Compare and 2 s on Runs, stretched by app.server.load's LoadMeter when the server is busy), and the
server's own per-tick CPU (TRAINLENS_TICK_LOG).
Run it twice, with and without --no-sharing, to see what sharing figures between sessions saves.
Targets (issue 11): the server uses at most one core on average, and the p95 refresh stays under 1 s.

    python benchmarks/class_load.py [--students 30] [--runs 8] [--seconds 60] [--warmup 30] [--ramp 15] [--no-sharing]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.classroom import STUDENT, ClassMode  # noqa: E402
from engine.config import RunConfig  # noqa: E402
from engine.records import RunStatus  # noqa: E402
from engine.runs.store import Store  # noqa: E402

CLASS, TEACHER = "bench-class-pass", "bench-teacher-pass"
STEPS_PER_S, EPOCH_STEPS = 20, 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunWriter(threading.Thread):
    """Writes the metrics of `runs` running runs as a worker would, under a registered (live) worker."""

    def __init__(self, home: Path, run_ids: list[str]):
        super().__init__(daemon=True)
        self.home, self.run_ids, self.stop = home, run_ids, threading.Event()

    def run(self) -> None:
        store = Store(self.home / "trainlens.db")
        worker = "bench-writer"
        store.register_worker(worker, os.getpid(), socket.gethostname(), "cpu")
        for run_id in self.run_ids:
            store.conn.execute("UPDATE runs SET status=?, worker_id=?, device='cpu', started_at=? WHERE run_id=?",
                               (RunStatus.RUNNING, worker, time.time(), run_id))
        rng = np.random.default_rng(0)
        step, total = 0, 100_000
        while not self.stop.is_set():
            started = time.time()
            rows = []
            for i, run_id in enumerate(self.run_ids):
                for s in range(step, step + STEPS_PER_S // 2):  # half a second of steps per batch
                    loss = 2.3 * np.exp(-s / (800 * (1 + i % 3))) + 0.05 + abs(rng.normal(0, 0.05))
                    rows += [(run_id, s, s // EPOCH_STEPS, "loss", float(loss), started),
                             (run_id, s, s // EPOCH_STEPS, "lr", 1e-3, started),
                             (run_id, s, s // EPOCH_STEPS, "grad_norm", float(abs(rng.normal(1, .3))), started),
                             (run_id, s, s // EPOCH_STEPS, "examples", float(s * 64), started)]
                    if s and s % EPOCH_STEPS == 0:
                        acc = 1 - np.exp(-s / 1500) * 0.9
                        rows += [(run_id, s, s // EPOCH_STEPS - 1, key, float(value), started) for key, value in
                                 (("val_acc", acc), ("val_loss", 1 - acc), ("train_loss", 1.05 - acc))]
            store.log_batch(rows)
            step += STEPS_PER_S // 2
            for run_id in self.run_ids:
                store.update_progress(run_id, step, total, step // EPOCH_STEPS)
            store.heartbeat(worker, "busy", self.run_ids[0])
            time.sleep(max(0.0, 0.5 - (time.time() - started)))


class Tab:
    """One browser tab: a websocket session on one page, rerunning its live fragments on the server's schedule."""

    def __init__(self, url: str, page: str, query: str, latencies: dict[str, list[float]], errors: list[str]):
        self.url, self.page, self.query = url, page, query
        self.latencies, self.errors = latencies, errors
        self.fragments: dict[str, float] = {}  # fragment id -> interval (s)
        self.pending: dict[str, float] = {}  # run key ("" = whole page) -> when asked
        self.measuring = False
        self.page_hash = ""  # the page's script hash, from the server's navigation message

    def back_msg(self, fragment_id: str = "") -> bytes:
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string, state.page_name = self.query, self.page
        state.page_script_hash = self.page_hash  # as a browser does: a rerun the script asks for keeps the page
        if fragment_id:
            state.fragment_id, state.is_auto_rerun = fragment_id, True
        return msg.SerializeToString()

    async def run(self, until: float, delay: float = 0.0) -> None:
        await asyncio.sleep(delay)  # students open their tabs over the first seconds, not all in one instant
        ws_url = self.url.replace("http://", "ws://") + "/_stcore/stream"
        async with websockets.connect(ws_url, subprotocols=["streamlit"], max_size=2**28,
                                      origin=self.url) as ws:
            receiver = asyncio.create_task(self.receive(ws))
            self.pending[""] = time.monotonic()
            await ws.send(self.back_msg())
            next_at: dict[str, float] = {}
            while time.monotonic() < until:
                now = time.monotonic()
                for fragment_id, interval in list(self.fragments.items()):
                    due = next_at.setdefault(fragment_id, now + interval)
                    if now >= due:
                        next_at[fragment_id] = due + interval  # the browser's timer keeps its cadence
                        if fragment_id not in self.pending and "" not in self.pending:
                            self.pending[fragment_id] = now
                            await ws.send(self.back_msg(fragment_id))
                await asyncio.sleep(0.05)
            receiver.cancel()

    async def receive(self, ws) -> None:
        seen_in_run: dict[str, float] = {}
        try:
            async for data in ws:
                msg = ForwardMsg()
                msg.ParseFromString(data)
                kind = msg.WhichOneof("type")
                if kind == "navigation" and msg.navigation.page_script_hash:
                    self.page_hash = msg.navigation.page_script_hash
                elif kind == "auto_rerun":
                    seen_in_run[msg.auto_rerun.fragment_id] = msg.auto_rerun.interval
                elif kind == "stop_auto_rerun":
                    for fragment_id in msg.stop_auto_rerun.fragment_ids:
                        self.fragments.pop(fragment_id, None)
                elif kind == "script_finished":
                    status = msg.script_finished
                    if status == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                        continue  # the script asked for a rerun (a fragment re-adapting): it follows at once
                    if status == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY:
                        key = next(iter(k for k in self.pending if k), None)
                        answered = {key: self.pending.pop(key)} if key is not None else {}
                    else:  # a whole page run answers everything asked so far, and sets the fragments anew
                        answered, self.pending = self.pending, {}
                        if seen_in_run:
                            self.fragments = dict(seen_in_run)
                    seen_in_run = {}
                    if self.measuring:
                        for key, asked in answered.items():
                            view = self.page if key else self.page + " (page)"
                            self.latencies.setdefault(view, []).append(time.monotonic() - asked)
                elif kind == "delta" and msg.delta.new_element.WhichOneof("type") == "exception":
                    self.errors.append(msg.delta.new_element.exception.message[:200])
        except (websockets.ConnectionClosed, asyncio.CancelledError):
            pass


async def drive(tabs: list[Tab], seconds: float, warmup: float, ramp: float, server: psutil.Process) -> dict:
    start = time.monotonic()
    until = start + warmup + seconds
    tasks = [asyncio.create_task(tab.run(until, ramp * i / len(tabs))) for i, tab in enumerate(tabs)]
    await asyncio.sleep(warmup)
    for tab in tabs:
        tab.measuring = True
    cpu0, wall0 = sum(server.cpu_times()[:2]), time.monotonic()
    rss = []
    while time.monotonic() < until - 0.5:
        rss.append(server.memory_info().rss)
        await asyncio.sleep(1.0)
    cpu1, wall1 = sum(server.cpu_times()[:2]), time.monotonic()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"cores": (cpu1 - cpu0) / (wall1 - wall0), "rss_mb": max(rss) / 2**20 if rss else float("nan"),
            "window_s": wall1 - wall0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before measuring (tabs open meanwhile)")
    parser.add_argument("--ramp", type=float, default=15.0, help="seconds over which the tabs open")
    parser.add_argument("--no-sharing", action="store_true", help="every session builds its own figures")
    parser.add_argument("--compare-only", action="store_true", help="one tab per student: the Compare view only")
    args = parser.parse_args()
    result, latencies, ticks, errors = simulate(args.students, args.runs, args.seconds, args.warmup, args.ramp,
                                                sharing=not args.no_sharing, compare_only=args.compare_only)
    tabs = "1 tab (Compare" if args.compare_only else "2 tabs (Compare"
    print(f"{args.students} students x {tabs} of {args.runs} running runs{'' if args.compare_only else ' + own Runs page'}), "
          f"figure sharing {'OFF' if args.no_sharing else 'on'}, {result['window_s']:.0f} s measured "
          f"after {args.warmup:.0f} s warm-up, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"server CPU: {result['cores']:.2f} cores on average (target <= 1.0); peak RSS {result['rss_mb']:.0f} MB")
    for view, values in sorted(latencies.items()):
        values = sorted(values)
        p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
        rate = len(values) / result["window_s"]
        every = f" (a tab every {args.students / rate:.1f} s)" if "(page)" not in view else ""
        print(f"{view:>16}: {rate:5.1f} refreshes/s{every}, p50 {statistics.median(values):.2f} s,"
              f" p95 {p95:.2f} s (target p95 < 1 s)")
    if ticks:
        print("server CPU per tick (median ms): " + ", ".join(
            f"{key} {statistics.median(v):.0f}" for key, v in sorted(ticks.items())))
    if errors:
        print(f"{len(errors)} page errors, e.g. {errors[0]}")


def simulate(n_students: int, n_runs: int, seconds: float, warmup: float, ramp: float, *, sharing: bool = True,
             compare_only: bool = False) -> tuple[dict, dict[str, list[float]], dict[str, list[float]], list[str]]:
    """One simulated class against a fresh server: (result with 'cores', 'rss_mb', 'window_s'; refresh latencies
    per view; the server's CPU ms per tick per view; page errors). Used by main() and benchmarks/cold_paths.py."""
    home = Path(tempfile.mkdtemp(prefix="class_load_"))
    tick_log = home / "ticks.csv"
    env = dict(os.environ, TRAINLENS_HOME=str(home), TRAINLENS_CLASS_PASSPHRASE=CLASS,
               TRAINLENS_TEACHER_PASSPHRASE=TEACHER, TRAINLENS_WARM_POOL="0", TRAINLENS_WORKERS="1",
               TRAINLENS_SHARED_FIGURES="0" if (not sharing) else "1", TRAINLENS_TICK_LOG=str(tick_log),
               PYTHONPATH=str(ROOT))
    os.environ.update({k: env[k] for k in ("TRAINLENS_HOME", "TRAINLENS_CLASS_PASSPHRASE",
                                           "TRAINLENS_TEACHER_PASSPHRASE")})
    store = Store(home / "trainlens.db")
    mode = ClassMode(home=home)
    students, seats = [], {}
    for i in range(n_students):
        joined = store.join_class(f"student {i:02d}", STUDENT)
        students.append(joined.actor)
        seats[joined.actor.name] = mode.issue_seat(joined.actor, joined.seat_id)
    store.set_limit("running", n_runs)
    store.set_limit("queued", n_runs)  # fewer students than runs: one student owns several
    run_ids = [store.create_run(RunConfig(seed=i), actor=students[i % len(students)], group="lesson")
               for i in range(n_runs)]
    writer = RunWriter(home, run_ids)
    writer.start()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.headless", "true", "--server.fileWatcherType", "none"],
                            cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        server = psutil.Process(proc.pid)
        latencies: dict[str, list[float]] = {}
        errors: list[str] = []
        compare_query = "runs=" + ",".join(run_ids)
        tabs = []
        for student in students:
            seat = "seat=" + seats[student.name]
            tabs.append(Tab(url, "compare", f"{compare_query}&{seat}", latencies, errors))
            if not compare_only:
                tabs.append(Tab(url, "runs", seat, latencies, errors))
        result = asyncio.run(drive(tabs, seconds, warmup, min(ramp, warmup), server))
    finally:
        writer.stop.set()
        proc.terminate()
        proc.wait(timeout=20)

    ticks: dict[str, list[float]] = {}
    if tick_log.exists():
        for _, key, _, cpu_ms in (line.split(",") for line in tick_log.read_text().splitlines()):
            ticks.setdefault(key, []).append(float(cpu_ms))
    return result, latencies, ticks, errors

if __name__ == "__main__":
    main()
