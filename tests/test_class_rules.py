"""Class mode in the engine: who may change which run, fair turns in the queue, class limits, passphrases.

These rules are enforced by the store and runner (not by hiding buttons), so they are tested here against the
engine API a forged request would reach.
"""

from __future__ import annotations

import hmac
import logging
import time

import pytest

from engine.classroom import LOCAL, STUDENT, TEACHER, Actor, ClassMode, Guesses, check_display_name
from engine.config import RunConfig
from engine.records import RunStatus
from engine.runs.access import CapReached, PermissionDenied
from engine.runs.runner import Runner
from engine.runs.store import NameTaken, Store, WrongCode

# members of the class, as a signed-in seat makes them (engine.runs.store.members): the id owns the runs
ANA, BEN = Actor("Ana", STUDENT, "m-ana"), Actor("Ben", STUDENT, "m-ben")
TEACH = Actor("Ms Rivera", TEACHER, "m-rivera")
TINY = RunConfig(model="mlp", epochs=1, train_limit=64)


@pytest.fixture
def store(trainlens_home):
    store = Store()
    yield store
    store.close()


def finish(store: Store, run_id: str, status: str = RunStatus.COMPLETED) -> None:
    store.update_status(run_id, status)


def test_a_student_cannot_cancel_resume_or_delete_another_students_run(store):
    bens = store.create_run(TINY, actor=BEN)
    with pytest.raises(PermissionDenied, match="belongs to Ben"):
        store.request_cancel(bens, actor=ANA)
    with pytest.raises(PermissionDenied):
        store.delete_run(bens, actor=ANA)
    store.request_cancel(bens, actor=BEN)  # the owner can
    with pytest.raises(PermissionDenied):
        store.resume_run(bens, actor=ANA)
    assert store.get_run(bens)["status"] == RunStatus.CANCELLED
    store.resume_run(bens, actor=BEN)
    assert store.get_run(bens)["status"] == RunStatus.QUEUED


def test_the_teacher_and_the_local_user_may_act_on_every_run(store):
    ana_runs = [store.create_run(TINY, actor=ANA) for _ in range(2)]
    assert store.request_cancel(ana_runs[0], actor=TEACH) == RunStatus.CANCELLED
    store.delete_run(ana_runs[0], actor=TEACH)
    assert store.get_run(ana_runs[0]) is None
    store.request_cancel(ana_runs[1], actor=Actor.local())
    store.delete_run(ana_runs[1])  # the engine itself (CLI without an actor)
    assert store.list_runs().empty


def test_a_name_alike_is_not_the_owner_unless_the_role_matches(store):
    """A teacher-owned run is not a student's to cancel, even if the student signs in with the teacher's name."""
    teachers = store.create_run(TINY, actor=TEACH)
    with pytest.raises(PermissionDenied):
        store.request_cancel(teachers, actor=Actor("Ms Rivera", STUDENT, "m-other"))
    with pytest.raises(PermissionDenied):  # nor with the teacher's member id, as a student
        store.request_cancel(teachers, actor=Actor("Ms Rivera", STUDENT, TEACH.member_id))


def test_the_runner_refuses_through_an_acting_handle_and_touches_nothing(store, trainlens_home):
    runner = Runner(store, workers=1)
    runner.ensure_workers = lambda: 0  # no worker processes: these runs only need to exist
    bens = runner.as_actor(BEN).submit(TINY).run_id
    (trainlens_home / "checkpoints" / bens).mkdir(parents=True)
    ana = runner.as_actor(ANA)
    assert not ana.may_act_on(BEN.member_id, STUDENT) and ana.may_act_on(ANA.member_id, STUDENT)
    for action in (ana.cancel, ana.delete, ana.resume):
        with pytest.raises(PermissionDenied):
            action(bens)
    with pytest.raises(PermissionDenied):
        ana.cancel_all()
    with pytest.raises(PermissionDenied):
        ana.remove_owner_runs(BEN.member_id)
    assert store.get_run(bens)["status"] == RunStatus.QUEUED
    assert (trainlens_home / "checkpoints" / bens).exists()
    assert runner.as_actor(TEACH).remove_owner_runs(BEN.member_id) == 1
    assert store.get_run(bens) is None and not (trainlens_home / "checkpoints" / bens).exists()


def test_an_acting_handle_reports_each_change_it_is_asked_to_make(store):
    """The dashboard hears of every change a session makes (app.ui.state.note_own_change), refused ones included."""
    runner = Runner(store, workers=1)
    runner.ensure_workers = lambda: 0
    changes = []
    teacher = runner.as_actor(TEACH, on_change=lambda: changes.append(1))
    run_id = teacher.submit(TINY).run_id
    teacher.cancel(run_id)
    teacher.cancel_all()
    teacher.remove_owner_runs(BEN.member_id)
    teacher.delete(run_id)
    assert len(changes) == 5
    assert teacher.may_act_on(BEN.member_id, STUDENT) and len(changes) == 5  # asking what one may do changes nothing
    ana = runner.as_actor(ANA, on_change=lambda: changes.append(1))
    with pytest.raises(PermissionDenied):
        ana.cancel_all()
    assert len(changes) == 6


def test_thirty_students_submitting_at_once_each_start_a_first_run_before_anyones_third(store):
    """Round-robin: the queue serves owners in turn, not first come first served."""
    store.set_limit("running", 5)
    students = [Actor(f"student {i:02d}", STUDENT, f"m-{i:02d}") for i in range(30)]
    owner_of = {}
    for student in students:  # each submits 3 runs in a burst; the first student's burst comes first
        for _ in range(3):
            owner_of[store.create_run(TINY, actor=student)] = student.name
    positions = store.queue_positions()
    started: list[str] = []
    while (run := store.claim_next("w1", "cpu")) is not None:
        started.append(run["owner"])
        store.update_status(run["run_id"], RunStatus.COMPLETED)
    assert len(started) == 90
    nth = {}
    order = []
    for owner in started:
        nth[owner] = nth.get(owner, 0) + 1
        order.append((owner, nth[owner]))
    last_first = max(i for i, (_, n) in enumerate(order) if n == 1)
    first_third = min(i for i, (_, n) in enumerate(order) if n == 3)
    assert last_first < first_third
    # the positions the page shows predicted that order
    predicted = [owner_of[r] for r, _ in sorted(positions.items(), key=lambda kv: kv[1])]
    assert predicted == started


def test_one_students_twenty_queued_runs_do_not_starve_a_latecomer(store):
    store.set_limit("queued", 50)
    hog = [store.create_run(TINY, actor=ANA) for _ in range(20)]
    first = store.claim_next("w1", "cpu")
    assert first["run_id"] == hog[0]
    late = store.create_run(TINY, actor=BEN)
    store.update_status(first["run_id"], RunStatus.COMPLETED)
    assert store.claim_next("w1", "cpu")["run_id"] == late


def test_a_student_at_the_running_limit_waits_and_is_told_why(store):
    a1, a2 = store.create_run(TINY, actor=ANA), store.create_run(TINY, actor=ANA)
    assert store.claim_next("w1", "cpu")["run_id"] == a1
    assert store.claim_next("w2", "cpu") is None  # the default limit: one running run per student
    assert "class limit" in store.waiting_reason(store.get_run(a2))
    store.update_status(a1, RunStatus.COMPLETED)
    assert store.claim_next("w2", "cpu")["run_id"] == a2


def test_a_paused_queue_holds_students_but_not_the_teacher(store):
    with pytest.raises(PermissionDenied):
        store.set_queue_paused(True, actor=ANA)
    store.set_queue_paused(True, actor=TEACH)
    student = store.create_run(TINY, actor=ANA)
    demo = store.create_run(TINY, actor=TEACH)
    assert "paused" in store.waiting_reason(store.get_run(student))
    assert store.claim_next("w1", "cpu")["run_id"] == demo
    assert store.claim_next("w1", "cpu") is None
    store.set_queue_paused(False, actor=TEACH)
    assert store.claim_next("w1", "cpu")["run_id"] == student


def test_caps_refuse_with_a_clear_message_and_keep_what_was_queued(store):
    with pytest.raises(CapReached, match="20 epochs; the class limit is 10"):
        store.create_run(TINY.with_updates(epochs=20), actor=ANA)
    with pytest.raises(CapReached, match="100,000 per run"):
        store.create_run(TINY.with_updates(train_limit=200_000), actor=ANA)
    kept = [store.create_run(TINY, actor=ANA) for _ in range(4)]
    refused = 0
    for _ in range(1000):  # a student submitting 1,000 runs
        try:
            store.create_run(TINY, actor=ANA)
        except CapReached as exc:
            refused += 1
            assert "class limit is 4" in str(exc)
    assert refused == 1000
    assert sorted(store.list_runs()["run_id"]) == sorted(kept)
    store.create_run(TINY.with_updates(epochs=50), actor=TEACH)  # the teacher has no caps
    store.set_limit("queued", 6, actor=TEACH)
    store.create_run(TINY, actor=ANA)
    with pytest.raises(ValueError, match="at least 1"):
        store.set_limit("queued", 0, actor=TEACH)


def test_limits_come_from_the_environment_then_the_teacher(store, monkeypatch):
    monkeypatch.setenv("TRAINLENS_MAX_EPOCHS", "2")
    assert store.limits().epochs == 2
    with pytest.raises(CapReached):
        store.create_run(TINY.with_updates(epochs=3), actor=ANA)
    store.set_limit("epochs", 30, actor=TEACH)
    store.create_run(TINY.with_updates(epochs=3), actor=ANA)


def test_default_names_are_unique_readable_and_suggested(store):
    names = [store.get_run(store.create_run(TINY, actor=ANA))["name"] for _ in range(3)]
    assert names == ["Ana-mlp-adam-lr0.002-s0", "Ana-mlp-adam-lr0.002-s0 #2", "Ana-mlp-adam-lr0.002-s0 #3"]
    assert store.unique_name(TINY, ANA) == "Ana-mlp-adam-lr0.002-s0 #4"
    assert store.unique_name(TINY) == "mlp-adam-lr0.002-s0"  # a single user's names stay as they were
    assert store.get_run(store.create_run(TINY, actor=ANA, name="mine"))["name"] == "mine"


def test_passphrases_compare_in_constant_time_and_never_reach_logs(monkeypatch, caplog, tmp_path):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    mode = ClassMode("sunflower-42", "teacher-oak-7", home=tmp_path)
    with caplog.at_level(logging.DEBUG):
        assert mode.role_for("sunflower-42") == STUDENT
        assert mode.role_for("teacher-oak-7") == TEACHER
        assert mode.role_for("sunflower-4") is None and mode.role_for("") is None
    assert len(calls) == 8  # both passphrases are compared every time, through compare_digest
    assert "sunflower" not in caplog.text and "oak" not in caplog.text
    assert mode.problem() is None
    assert "differ" in ClassMode("same-thing", "same-thing", home=tmp_path).problem()
    assert "both" in ClassMode("only-class", "", home=tmp_path).problem()


def test_seat_tokens_admit_their_holder_and_refuse_forgeries(tmp_path):
    mode = ClassMode("sunflower-42", "teacher-oak-7", home=tmp_path)
    token = mode.issue_seat(ANA, "seat-1")
    assert "sunflower" not in token and "oak" not in token
    assert mode.read_seat(token) == (ANA, "seat-1")
    payload, signature = token.split(".")
    import base64
    import json

    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["r"] = TEACHER  # a student promoting themselves
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=") + "." + signature
    assert mode.read_seat(forged) is None
    assert mode.read_seat(token, now=time.time() + 13 * 3600) is None  # expired
    assert mode.read_seat("garbage") is None and mode.read_seat("a.b.c") is None and mode.read_seat("x" * 5000) is None
    assert ClassMode("sunflower-43", "teacher-oak-7", home=tmp_path).read_seat(token) is None  # passphrase changed


def test_wrong_guesses_are_slowed_down_per_client():
    guesses = Guesses()
    now = 1000.0
    waits = [guesses.failed("10.0.0.7", now=now) for _ in range(6)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3:] == [2.0, 4.0, 8.0]
    assert guesses.wait_s("10.0.0.7", now=now + 1) == 7.0
    assert guesses.wait_s("10.0.0.8", now=now) == 0.0  # another client is not slowed
    guesses.succeeded("10.0.0.7")
    assert guesses.wait_s("10.0.0.7", now=now) == 0.0


def test_wrong_guesses_are_also_counted_for_the_whole_server_and_forgotten_after_a_while():
    """New addresses (or made-up forwarded ones) buy a few free guesses each, not free guessing: beyond
    SERVER_FREE failures in the window, every guess from anywhere waits."""
    guesses, now = Guesses(), 1000.0
    for i in range(Guesses.SERVER_FREE):
        assert guesses.failed(f"ip:10.0.{i}.1", now=now) == 0.0  # each address's first wrong guess is free
    assert guesses.failed("ip:10.9.9.9", now=now) == 2.0  # one more, from a new address: the server makes it wait
    assert guesses.wait_s("ip:10.9.9.10", now=now + 1) == 1.0  # and so does every other address for now
    assert guesses.wait_s("ip:10.9.9.10", now=now + Guesses.SERVER_WINDOW_S + 5) == 0.0
    late = now + Guesses.SERVER_WINDOW_S + 5  # the window has passed: the count starts again
    assert guesses.failed("ip:10.9.9.11", now=late) == 0.0
    assert [guesses.failed("name:ana", "ip:10.0.0.1", now=late) for _ in range(4)][-1] == 2.0  # codes: per name too
    assert guesses.wait_s("ip:10.7.7.7", "name:ana", now=late) == 2.0  # Ana's code, guessed from another address


def test_the_client_address_behind_a_trusted_proxy_is_the_one_it_forwards(monkeypatch):
    from engine.classroom import LOOPBACK_CLIENT, client_address, trusted_proxies

    assert client_address(None, None) == LOOPBACK_CLIENT  # this computer, an SSH forward, a local proxy: one client
    assert client_address("10.0.0.7", "6.6.6.6") == "10.0.0.7"  # nobody trusted: the header is ignored
    proxies = trusted_proxies("10.0.0.5, 127.0.0.1 192.168.0.0/24")
    assert client_address("10.0.0.5", "6.6.6.6, 203.0.113.9", proxies) == "203.0.113.9"  # the proxy's entry, not the claim
    assert client_address("10.0.0.5", "203.0.113.9, 192.168.0.3", proxies) == "203.0.113.9"  # through two proxies
    assert client_address(None, "203.0.113.9", proxies) == "203.0.113.9"  # a proxy on this computer
    assert client_address("10.0.0.6", "203.0.113.9", proxies) == "10.0.0.6"  # not a trusted proxy: its own address
    assert client_address("10.0.0.5", "garbage", proxies) == "10.0.0.5"
    with pytest.raises(ValueError, match="TRAINLENS_TRUSTED_PROXIES: 'proxy.lan' is not an IP address"):
        trusted_proxies("10.0.0.5,proxy.lan")
    monkeypatch.setenv("TRAINLENS_TRUSTED_PROXIES", "10.0.0.300")
    assert "TRAINLENS_TRUSTED_PROXIES" in ClassMode("sunflower-42", "teacher-oak-7").problem()


@pytest.mark.parametrize("name, problem", [("", "Enter a display name"), ("   ", "Enter a display name"),
                                           ("x" * 10_000, "at most 40"), ("a\x00b", "control"),
                                           ("a\u200bb", "control")])
def test_bad_display_names_get_a_clear_message(name, problem):
    with pytest.raises(ValueError, match=problem):
        check_display_name(name)


def test_a_name_someone_is_signed_in_under_is_refused_with_the_way_back(store):
    html = "<b>Ana</b><script>alert(1)</script>"
    assert check_display_name(html) == html  # allowed: it is only ever shown as text
    ana = store.join_class("Ana", STUDENT)
    assert ana.code and ana.actor.member_id and store.seat_actor(ana.seat_id) == ana.actor
    with pytest.raises(NameTaken, match="signed in as 'ana'.*rejoin code.*ask the teacher") as refused:
        store.join_class("  ana ", STUDENT)  # another case and spacing: the same name
    assert refused.value.signed_in
    with pytest.raises(PermissionDenied):
        store.free_member(ana.actor.member_id, actor=ana.actor)
    assert store.free_member(ana.actor.member_id, actor=TEACH) == 1
    assert store.seat_actor(ana.seat_id) is None  # her token stops working
    with pytest.raises(ValueError, match="invisible"):
        store.join_class("An\u202ea", STUDENT)


def test_a_newcomer_under_a_freed_name_is_someone_new_and_the_student_rejoins_with_her_code(store):
    """The rules behind the sign-in: a freed or signed-out name never hands its runs to whoever types it next."""
    ana = store.join_class("Ana", STUDENT)
    runs = [store.create_run(TINY, actor=ana.actor) for _ in range(2)]
    store.leave_class(ana.seat_id)  # she signs out
    with pytest.raises(NameTaken, match="runs stay theirs") as dormant:
        store.join_class("ANA", STUDENT)
    assert not dormant.value.signed_in
    newcomer = store.join_class(" ana  ", STUDENT, new_member=True)
    assert newcomer.actor.member_id != ana.actor.member_id and newcomer.code != ana.code
    for action in (store.request_cancel, store.delete_run, store.resume_run):
        with pytest.raises(PermissionDenied, match="belongs to Ana"):
            action(runs[0], actor=newcomer.actor)
    with pytest.raises(WrongCode, match="not the one given to 'Ana'"):
        store.join_class("Ana", STUDENT, code="ZZZZ-ZZZZ")
    again = store.join_class("Ana", STUDENT, code=newcomer.code)
    assert again.actor == newcomer.actor  # the newcomer's code brings back the newcomer, never Ana
    back = store.join_class("ana", STUDENT, code=ana.code.lower().replace("-", " "))  # as typed on another laptop
    assert back.rejoined and back.actor == ana.actor and back.code != ana.code
    assert store.request_cancel(runs[0], actor=back.actor) == RunStatus.CANCELLED
    with pytest.raises(WrongCode):  # a code is good for one rejoin
        store.join_class("Ana", STUDENT, code=ana.code)
    assert store.join_class("Ana", STUDENT, code=back.code).actor == ana.actor  # the new one works
    statuses = dict(zip(store.members()["member_id"], store.members()["status"]))
    assert statuses == {ana.actor.member_id: "signed in", newcomer.actor.member_id: "signed in"}


def test_the_teacher_lets_a_student_back_in_and_sees_who_is_idle_or_waiting(store):
    ana = store.join_class("Ana", STUDENT, now=time.time() - 600)  # last seen 10 minutes ago
    store.create_run(TINY, actor=ana.actor)
    request = store.request_rejoin("ana")
    assert dict(zip(store.members()["name"], store.members()["status"])) == {"Ana": "idle"}
    store.leave_class(ana.seat_id)
    assert store.members()["status"].tolist() == ["waiting to rejoin"]
    assert store.rejoin_answer(request) == "waiting" and store.claim_rejoin(request) is None
    with pytest.raises(PermissionDenied):
        store.decide_rejoin(request, ana.actor.member_id, actor=BEN)
    other = store.join_class("Zoe", STUDENT)
    with pytest.raises(ValueError, match="name it asked for"):
        store.decide_rejoin(request, other.actor.member_id, actor=TEACH)
    store.decide_rejoin(request, ana.actor.member_id, actor=TEACH)
    back = store.claim_rejoin(request)
    assert back.actor == ana.actor and back.code and store.seat_actor(back.seat_id) == ana.actor
    assert store.claim_rejoin(request) is None  # one seat per approval
    first, refused = store.request_rejoin("Zoe"), store.request_rejoin("zoe ")  # asked twice: one line for the teacher
    assert list(store.rejoin_requests()["request_id"]) == [refused] and store.rejoin_answer(first) == "lapsed"
    store.decide_rejoin(refused, None, actor=TEACH)
    assert store.rejoin_answer(refused) == "refused" and store.rejoin_answer("nonsense") == "lapsed"


def test_the_teacher_rejoins_by_passphrase_on_a_second_screen(store):
    laptop = store.join_class("Ms Rivera", TEACHER)
    projector = store.join_class("ms rivera", TEACHER)
    assert projector.actor == laptop.actor and not projector.code  # no code to show on a projector
    assert store.seat_actor(laptop.seat_id) and store.seat_actor(projector.seat_id)  # both stay signed in
    with pytest.raises(NameTaken):
        store.join_class("Ms Rivera", STUDENT)


def test_an_old_store_keeps_its_class_members_their_seats_and_their_runs(trainlens_home):
    """Schema 3 (members by name, runs owned by a name) moves to schema 4 (members by id): each student keeps
    their runs and a signed-in seat stays signed in; an owner who had left becomes a signed-out member."""
    import sqlite3

    from engine.runs.store import SCHEMA_VERSION

    Store().close()
    conn = sqlite3.connect(trainlens_home / "trainlens.db")
    conn.executescript("""
        DROP TABLE members; DROP TABLE seats; DROP TABLE rejoin_requests;
        CREATE TABLE members (name_key TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
                              seat_id TEXT NOT NULL, joined_at REAL NOT NULL, left_at REAL);
        ALTER TABLE runs DROP COLUMN owner_id; ALTER TABLE runs DROP COLUMN claimed_at;
        UPDATE meta SET value='3' WHERE key='schema_version';
    """)
    joined = time.time() - 60  # they signed in a minute before the upgrade
    conn.executemany("INSERT INTO members VALUES (?,?,?,?,?,NULL)", [("ana", "Ana", "student", "seat-ana", joined),
                                                                     ("ms rivera", "Ms Rivera", "teacher", "seat-t",
                                                                      joined)])
    for run_id, owner, role in (("r-ana", "Ana", "student"), ("r-ben", "Ben", "student"),
                                ("r-local", "me", "local"), ("r-t", "Ms Rivera", "teacher")):
        conn.execute("INSERT INTO runs(run_id, name, owner, owner_role, config, status, created_at, queued_at) "
                     "VALUES (?,?,?,?,?,'queued',1,1)", (run_id, run_id, owner, role, TINY.to_json()))
    conn.commit()
    conn.close()
    store = Store()
    assert store.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    ana = store.seat_actor("seat-ana")
    assert ana is not None and ana.name == "Ana" and ana.member_id  # still signed in
    assert store.get_run("r-ana")["owner_id"] == ana.member_id and store.get_run("r-local")["owner_id"] == ""
    assert store.request_cancel("r-ana", actor=ana) == RunStatus.CANCELLED
    with pytest.raises(PermissionDenied):
        store.request_cancel("r-ben", actor=ana)
    members = store.members().set_index("name")
    assert members.at["Ben", "status"] == "signed out"
    assert store.get_run("r-ben")["owner_id"] == members.at["Ben", "member_id"]
    assert store.get_run("r-t")["owner_id"] == store.seat_actor("seat-t").member_id
    with pytest.raises(NameTaken):  # Ben's runs are not the next Ben's
        store.join_class("Ben", STUDENT)
    store.close()


def test_an_old_store_is_migrated_with_its_runs_owned_by_the_local_user(trainlens_home):
    import sqlite3

    store = Store()
    run_id = store.create_run(TINY)
    store.close()
    conn = sqlite3.connect(trainlens_home / "trainlens.db")
    conn.execute("ALTER TABLE runs DROP COLUMN owner_role")
    conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    store = Store()
    assert store.get_run(run_id)["owner_role"] == LOCAL
    assert store.list_runs()["owner_role"].tolist() == [LOCAL]
    store.close()


def test_the_class_command_refuses_without_passphrases_and_says_where_students_go(monkeypatch, capsys):
    from engine.cli import main

    monkeypatch.delenv("TRAINLENS_CLASS_PASSPHRASE", raising=False)
    monkeypatch.delenv("TRAINLENS_TEACHER_PASSPHRASE", raising=False)
    assert main(["class", "--dry-run"]) == 2
    assert "needs both" in capsys.readouterr().err
    monkeypatch.setenv("TRAINLENS_CLASS_PASSPHRASE", "sunflower-42")
    monkeypatch.setenv("TRAINLENS_TEACHER_PASSPHRASE", "teacher-oak-7")
    assert main(["class", "--dry-run", "--host", "10.1.2.3", "--port", "8600"]) == 0
    out = capsys.readouterr().out
    assert "http://10.1.2.3:8600" in out and "sunflower" not in out


def test_a_lesson_too_big_for_the_class_limits_is_refused_whole(store):
    from engine import lessons

    runner = Runner(store, workers=1)
    runner.ensure_workers = lambda: 0  # no worker processes: the runs only need to be queued
    lesson = lessons.get_lesson("optimizer_race")
    store.set_limit("lesson_runs", 4, actor=TEACH)
    with pytest.raises(ValueError, match="class limit is 4 runs per lesson"):
        lessons.launch(lesson, runner.as_actor(ANA))
    assert store.list_runs().empty  # no half lesson left behind
    group, ids = lessons.launch(lesson, runner.as_actor(TEACH))
    assert len(ids) == len(lesson.configs(group)) > 4
