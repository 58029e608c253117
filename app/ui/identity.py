"""Who is using this dashboard session: the single local user, or (in class mode) a signed-in student or teacher.

`gate(store)` runs before every page. Without class mode it returns the local user at once (no login, as a laptop
user expects) and refuses to serve a server reachable beyond this computer, because then anyone on the network
would act as the owner of every run. With class mode it shows the sign-in (app.ui.sign_in) until the visitor gives
a passphrase and a display name, then keeps them signed in across reloads with a signed seat token in the URL
(`?seat=`; see engine.classroom). The token names a seat; the store says which class member the seat belongs to
(engine.runs.store.members), and the member's id, not the name typed, is whose runs these are. The passphrase
itself never reaches the URL, a log or the page.

Streamlit has no API to set a cookie, so the seat token rides in the URL: whoever is sent that URL can act as that
student until the teacher frees them or the token expires (12 h). The teacher frees members from the Class page.
"""

from __future__ import annotations

import sys
import time

import streamlit as st

from app.charts.text import escape_md
from app.ui.sign_in import SESSION_KEY, class_mode, rejoin_code_notice, remember, sign_in_page
from engine.classroom import Actor

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SEEN_KEY = "_class_seen_at"  # when this session last told the store it is here (for the teacher's idle column)


def session_actor() -> Actor:
    """The actor of this session (the gate has run). In class mode a session that is not signed in acts as nobody:
    PermissionError rather than falling back to the local user, who may do everything."""
    held = st.session_state.get(SESSION_KEY)
    if held:
        return Actor(held[0], held[1], held[4])
    if class_mode().enabled:
        raise PermissionError("Sign in to the class first")
    return Actor.local()


def gate(store) -> Actor:
    """Return who is using this session, or draw the sign-in form (or a refusal) and stop the page."""
    mode = class_mode()
    if not mode.enabled:
        address = str(st.get_option("server.address") or "")
        if address not in LOOPBACK:
            _refuse_open_server(address)
        return Actor.local()
    if (problem := mode.problem()) is not None:
        st.error(f"{escape_md(problem)}. The operator must fix the class settings and restart the server.",
                 icon=":material/lock:")
        st.stop()
    held = st.session_state.get(SESSION_KEY)
    if held and (actor := store.seat_actor(held[2], held[1])) is not None:
        if st.query_params.get("seat") != held[3]:
            st.query_params["seat"] = held[3]  # page switches drop query parameters; a reload needs the seat back
        _seen(store, held[2])
        rejoin_code_notice()
        return actor
    st.session_state.pop(SESSION_KEY, None)
    token = st.query_params.get("seat")
    if token:
        seat = mode.read_seat(token)
        actor = store.seat_actor(seat[1], seat[0].role) if seat is not None else None
        if actor is not None:
            remember(actor, seat[1], token)
            return actor
        del st.query_params["seat"]
        st.warning("Your sign-in has ended (it expired, you signed out, or the teacher signed you out). Sign in "
                   "again: with your rejoin code you get your own runs back.", icon=":material/logout:")
    sign_in_page(mode, store)
    st.stop()


def _seen(store, seat_id: str) -> None:
    """Tell the store this seat is in use, at most once a minute per session (a write; pages run many times)."""
    now = time.time()
    if now - st.session_state.get(SEEN_KEY, 0.0) >= 60.0:
        st.session_state[SEEN_KEY] = now
        store.seat_seen(seat_id, now)


def _refuse_open_server(address: str) -> None:
    message = (f"This dashboard is listening on {address or 'every network interface'}, so other computers can reach "
               "it, but class mode is off: everyone would act as the owner of every run. Serve a class with "
               "`python -m engine class` (it asks for a class and a teacher passphrase), or restart with "
               "`--server.address 127.0.0.1` to use TrainLens on this computer only.")
    print(f"TrainLens refuses to serve: {message}", file=sys.stderr)
    st.error(message, icon=":material/lock:")
    st.stop()


def sidebar(actor: Actor, store) -> None:
    """Who is signed in, and a way out (class mode only)."""
    if not class_mode().enabled:
        return
    role = "teacher" if actor.role == "teacher" else "student"
    st.sidebar.markdown(f"Signed in as **{escape_md(actor.name)}** ({role})")
    if actor.role == "teacher" and (waiting := len(store.rejoin_requests())):
        st.sidebar.page_link("views/classroom.py", icon=":material/front_hand:",
                             label=f"{waiting} student(s) ask to be let back in")
    if st.sidebar.button("Sign out", key="sign_out", icon=":material/logout:",
                         help="Signs out this browser. Your runs stay yours: sign back in with your rejoin code."):
        held = st.session_state.pop(SESSION_KEY, None)
        if held:
            store.leave_class(held[2])
        st.query_params.clear()
        st.rerun()
