"""The classroom commands: `class` (serve the dashboard to a room in class mode) and `lesson` (list the lessons,
or run one and print its answer)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from engine.cli.common import UsageError
from engine.records import ACTIVE


def register(sub) -> dict:
    """Add the classroom commands' parsers to `sub`; their functions by command name."""
    klass = sub.add_parser("class", help="serve the dashboard to a class on this network (class mode)")
    klass.add_argument("--host", default="auto",
                       help="address to listen on (default: this computer's address on the local network)")
    klass.add_argument("--port", type=int, default=8501)
    klass.add_argument("--dry-run", action="store_true", help="check the settings and print the address, start nothing")

    lesson = sub.add_parser("lesson", help="list the classroom lessons, or run one and print its answer (--wait)")
    lesson.add_argument("name", nargs="?", help="the lesson to run (see --list)")
    lesson.add_argument("--list", action="store_true", help="list the lessons")
    lesson.add_argument("--wait", action="store_true", help="wait for the runs, print the answer; exit 1 if a claim fails")
    return {"class": cmd_class, "lesson": cmd_lesson}


def cmd_class(args) -> int:
    """Serve the dashboard to a room: class mode on (both passphrases set), listening on the LAN address.

    The command becomes the Streamlit server (exec, same process id): a stop signal (Ctrl-C's SIGINT, `kill`'s
    SIGTERM, a closed terminal's SIGHUP) reaches the server itself, which then ends and frees its port. A child
    process would outlive its parent killed by SIGTERM or SIGHUP, serving the old passphrases and holding the
    port against the next start."""
    import getpass

    from engine.classroom import ClassMode

    for variable, who in (("TRAINLENS_CLASS_PASSPHRASE", "students"), ("TRAINLENS_TEACHER_PASSPHRASE", "the teacher")):
        if not os.environ.get(variable) and sys.stdin.isatty() and not args.dry_run:
            os.environ[variable] = getpass.getpass(f"Passphrase for {who} ({variable}): ")  # never echoed
    problem = ClassMode().problem()
    if problem:
        raise UsageError(f"{problem}; set them in the environment (e.g. `export TRAINLENS_CLASS_PASSPHRASE=...`)")
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: use a port between 1 and 65535")
    host = _lan_address() if args.host == "auto" else args.host
    hosts = ["localhost", "127.0.0.1", "::1"] + ([host] if host not in ("0.0.0.0", "::") else ["*"])
    print(f"Class mode: students open http://{host}:{args.port} and enter the class passphrase; the teacher enters "
          "the teacher passphrase. Stop with Ctrl-C.")
    if args.dry_run:
        return 0
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "streamlit", "run", str(root / "app" / "main.py"), "--server.address", host,
               "--server.port", str(args.port)]
    for name in hosts:
        command += ["--server.allowedHosts", name]
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(root)  # the server reads .streamlit/config.toml from the repository root
    os.execv(sys.executable, command)  # the passphrases travel in the environment, never in argv
    return 1  # not reached: exec replaces this process


def _lan_address() -> str:
    """This computer's address on the local network (the interface a packet to the LAN would leave by); no packet
    is sent. 127.0.0.1 when there is no network."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def cmd_lesson(args) -> int:
    """List the lessons, or launch one (printing its group and run ids) and, with --wait, print its answer and
    claims once every run has ended. Exit 0 when launched (or, waiting, when every claim holds), 1 when a claim
    fails, 2 for an unknown lesson (ValueError, turned into one line by `_run`)."""
    from engine import lessons

    if args.list or not args.name:
        found, problems = lessons.load_lessons()
        for lesson in found:
            runs = lesson.run_count
            print(f"{lesson.name:<22} {lesson.title} ({runs} run{'s' if runs > 1 else ''}, ~{lesson.minutes:g} min)")
        for problem in problems.values():
            print(f"unreadable lesson {problem}", file=sys.stderr)
        return 0
    from engine.runs.runner import Runner

    lesson = lessons.get_lesson(args.name)
    runner = Runner()
    group, run_ids = lessons.launch(lesson, runner)
    print(f"{lesson.title}\n{lesson.question}")
    print(f"group: {group}")
    for run_id in run_ids:
        print(run_id, flush=True)
    if not args.wait:
        return 0
    last_recover = time.time()
    while True:
        runs = runner.store.list_runs(group=group)
        if time.time() - last_recover > 3.0:  # a killed worker: mark its run, keep the pool alive
            runner.recover()
            last_recover = time.time()
        if not runs["status"].isin([s.value for s in ACTIVE]).any():
            break
        time.sleep(0.5)
    result = lessons.outcome(lesson, lessons.results_from_store(runner.store, lesson, group))
    print(result.answer)
    width = max((len(s.label) for s in result.standings), default=0)
    texts = [s.text for s in result.standings]
    for standing in result.standings:  # every variant, best first, numbers alike; a tie shares its place
        place = texts.index(standing.text) + 1
        print(f"  {place:>2}. {standing.label:<{width}}  {standing.text} {standing.when}".rstrip())
    for check in result.checks:
        mark = {True: "holds", False: "does NOT hold", None: "undecided"}[check.holds]
        print(f"  [{mark}] {check.claim.text} ({check.detail})")
    return 0 if result.holds else 1
