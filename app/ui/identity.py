"""Who is using this dashboard session: the single local user, or (in class mode) a signed-in student or teacher.

`gate(store)` runs before every page. Without class mode it returns the local user at once (no login, as a laptop
user expects) and refuses to serve a server reachable beyond this computer, because then anyone on the network
would act as the owner of every run. With class mode it shows the sign-in form until the visitor gives a
passphrase and a display name, then keeps them signed in across reloads with a signed seat token in the URL
(`?seat=`; see engine.classroom). The passphrase itself never reaches the URL, a log or the page.

Streamlit has no API to set a cookie, so the seat token rides in the URL: whoever is sent that URL can act as that
student until the teacher frees the name or the token expires (12 h). The teacher frees names from the Class page.
"""

from __future__ import annotations

import secrets
import sys

import streamlit as st

from app.charts.text import escape_md
from engine.classroom import Actor, ClassMode, Guesses, check_display_name

SESSION_KEY = "class_actor"  # (name, role, seat_id, token): plain values in session state
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@st.cache_resource(show_spinner=False)
def class_mode() -> ClassMode:
    return ClassMode()


@st.cache_resource(show_spinner=False)
def _guesses() -> Guesses:
    return Guesses()


def session_actor() -> Actor:
    """The actor of this session (the gate has run). In class mode a session that is not signed in acts as nobody:
    PermissionError rather than falling back to the local user, who may do everything."""
    held = st.session_state.get(SESSION_KEY)
    if held:
        return Actor(held[0], held[1])
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
        st.error(f"{problem}. The operator must fix the class settings and restart the server.",
                 icon=":material/lock:")
        st.stop()
    held = st.session_state.get(SESSION_KEY)
    if held and store.seat_holds(Actor(held[0], held[1]), held[2]):
        if st.query_params.get("seat") != held[3]:
            st.query_params["seat"] = held[3]  # page switches drop query parameters; a reload needs the seat back
        return Actor(held[0], held[1])
    st.session_state.pop(SESSION_KEY, None)
    token = st.query_params.get("seat")
    if token:
        seat = mode.read_seat(token)
        if seat is not None and store.seat_holds(*seat):
            actor, seat_id = seat
            st.session_state[SESSION_KEY] = (actor.name, actor.role, seat_id, token)
            return actor
        del st.query_params["seat"]
        st.warning("Your sign-in has ended (it expired, you signed out, or the teacher freed your name). "
                   "Sign in again.", icon=":material/logout:")
    _sign_in_form(mode, store)
    st.stop()


def _refuse_open_server(address: str) -> None:
    message = (f"This dashboard is listening on {address or 'every network interface'}, so other computers can reach "
               "it, but class mode is off: everyone would act as the owner of every run. Serve a class with "
               "`python -m engine class` (it asks for a class and a teacher passphrase), or restart with "
               "`--server.address 127.0.0.1` to use TrainLens on this computer only.")
    print(f"TrainLens refuses to serve: {message}", file=sys.stderr)
    st.error(message, icon=":material/lock:")
    st.stop()


def _client_key() -> str:
    """Who is guessing: the browser's address when Streamlit knows it, else this browser session."""
    address = getattr(st.context, "ip_address", None)
    if isinstance(address, str) and address:
        return f"ip:{address}"
    return "session:" + st.session_state.setdefault("_guess_session", secrets.token_hex(8))


def _sign_in_form(mode: ClassMode, store) -> None:
    left, middle, right = st.columns([1, 2, 1])
    with middle:
        st.title("Join the class")
        st.write("Enter the passphrase your teacher gave you and the name your classmates will see on your runs.")
        with st.form("sign_in"):
            passphrase = st.text_input("Passphrase", type="password", key="sign_in_passphrase")
            name = st.text_input("Your display name", key="sign_in_name",
                                 placeholder="e.g. Ana L.", help="At most 40 characters")
            submitted = st.form_submit_button("Join", type="primary")
        if submitted:
            problem = _sign_in(mode, store, passphrase, name)
            if problem:
                st.error(problem, icon=":material/error:")
            else:
                st.rerun()


def _sign_in(mode: ClassMode, store, passphrase: str, name: str) -> str | None:
    """Sign this session in; returns the problem to show (markdown-escaped) or None."""
    guesses, client = _guesses(), _client_key()
    wait = guesses.wait_s(client)
    if wait > 0:  # not even compared: a script hammering the form learns nothing faster
        return f"Too many wrong passphrases from here. Wait {wait:.0f} s and try again."
    role = mode.role_for(passphrase)
    if role is None:
        wait = guesses.failed(client)
        return "That passphrase is not right." + (f" Wait {wait:.0f} s before the next try." if wait else "")
    guesses.succeeded(client)
    try:
        actor = Actor(check_display_name(name), role)
        seat_id = secrets.token_hex(8)
        store.join_class(actor, seat_id)
    except ValueError as exc:
        return escape_md(str(exc))
    token = mode.issue_seat(actor, seat_id)
    st.session_state[SESSION_KEY] = (actor.name, actor.role, seat_id, token)
    st.query_params["seat"] = token
    return None


def sidebar(actor: Actor, store) -> None:
    """Who is signed in, and a way out (class mode only)."""
    if not class_mode().enabled:
        return
    role = "teacher" if actor.role == "teacher" else "student"
    st.sidebar.markdown(f"Signed in as **{escape_md(actor.name)}** ({role})")
    if st.sidebar.button("Sign out", key="sign_out", icon=":material/logout:"):
        held = st.session_state.pop(SESSION_KEY, None)
        if held:
            store.leave_class(held[2])
        st.query_params.clear()
        st.rerun()
