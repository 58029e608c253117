"""The class sign-in (class mode only): the form, coming back as oneself, waiting for the teacher, the rejoin code.

- **The form** asks for the passphrase, a display name and, for someone coming back, their rejoin code. A right
  passphrase with a new name joins the class as a new member, who is shown their personal rejoin code once
  (`rejoin_code_notice`: they copy it or write it down).
- **A name someone has** is refused with the way back (engine.runs.store.members.NameTaken): the rejoin code, or a
  button that asks the teacher to let them back in; for the name of an earlier student who is signed out, also a
  button to join as someone new under it (who never gets the earlier student's runs).
- **Waiting for the teacher**: the page polls the request every 2 s and signs in the moment the teacher lets them in
  (on the Class page), or says they refused.
- **Wrong guesses** (passphrases, and rejoin codes per name too) are slowed down by engine.classroom.Guesses, keyed
  by the client's address (`client_key`: this computer, an SSH forward and a local proxy are one client, "loopback",
  unless the operator names the proxy in TRAINLENS_TRUSTED_PROXIES), and counted for the whole server, so a new
  browser session buys no free guesses.
"""

from __future__ import annotations

import time

import streamlit as st

from app.charts.text import escape_md
from engine.classroom import (TEACHER, Actor, ClassMode, Guesses, check_display_name, client_address, name_key,
                              trusted_proxies)
from engine.runs.store.members import NameTaken, WrongCode

SESSION_KEY = "class_actor"  # (name, role, seat_id, token, member_id): plain values in session state
CODE_KEY = "class_rejoin_code"  # (code, rejoined): the rejoin code to show this session once
OFFER_KEY = "class_sign_in_offer"  # after a refused name: what the right passphrase allows next
WAIT_KEY = "class_rejoin_wait"  # {"request_id", "name"} while the teacher has not answered
NOTE_KEY = "class_sign_in_note"  # what happened to the last request, for the form
OFFER_TTL_S = 300.0  # the buttons after a refused name stay usable this long without typing the passphrase again


@st.cache_resource(show_spinner=False)
def class_mode() -> ClassMode:
    return ClassMode()


@st.cache_resource(show_spinner=False)
def _guesses() -> Guesses:
    return Guesses()


def remember(actor: Actor, seat_id: str, token: str) -> None:
    """This session is `actor`, through this seat and its token."""
    st.session_state[SESSION_KEY] = (actor.name, actor.role, seat_id, token, actor.member_id)


def client_key() -> str:
    """Who is guessing: the client's address as engine.classroom.client_address reads it (Streamlit reports this
    computer as no address: every loopback client, a tunnel or a local proxy, is one client)."""
    try:
        peer = st.context.ip_address
        forwarded = st.context.headers.get("X-Forwarded-For")
    except Exception:  # no browser connection (a script run without one)
        peer, forwarded = None, None
    return "ip:" + client_address(peer if isinstance(peer, str) and peer else None, forwarded, trusted_proxies())


def sign_in_page(mode: ClassMode, store) -> None:
    """The sign-in form, or the wait for the teacher's answer."""
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        st.title("Join the class")
        if st.session_state.get(WAIT_KEY):
            _waiting(mode, store)
        else:
            _form(mode, store)


def _form(mode: ClassMode, store) -> None:
    st.write("Enter the passphrase your teacher gave you and the name your classmates will see on your runs.")
    if note := st.session_state.pop(NOTE_KEY, None):
        st.warning(note, icon=":material/info:")
    with st.form("sign_in"):
        passphrase = st.text_input("Passphrase", type="password", key="sign_in_passphrase")
        name = st.text_input("Your display name", key="sign_in_name", placeholder="e.g. Ana L.",
                             help="At most 40 characters")
        code = st.text_input("Rejoin code (only when coming back)", key="sign_in_code", placeholder="e.g. K7QM-2XPA",
                             help="The code you were shown when you first joined: with it you sign in as yourself "
                                  "again, from any tab or laptop, and your runs are yours.")
        submitted = st.form_submit_button("Join", type="primary")
    if submitted:
        st.session_state.pop(OFFER_KEY, None)
        problem = _sign_in(mode, store, passphrase, name, code)
        if problem and st.session_state.get(OFFER_KEY):  # a name someone has: a choice to make, not a mistake
            st.warning(problem, icon=":material/person_search:")
        elif problem:
            st.error(problem, icon=":material/error:")
        else:
            st.rerun()
    offer = st.session_state.get(OFFER_KEY)
    if offer and time.time() - offer["at"] < OFFER_TTL_S and offer["role"] != TEACHER:
        _offer(mode, store, offer)


def _sign_in(mode: ClassMode, store, passphrase: str, name: str, code: str) -> str | None:
    """Sign this session in; returns the problem to show (markdown-escaped) or None."""
    guesses, client = _guesses(), client_key()
    keys = (client,) + ((f"name:{name_key(name or '')}",) if code.strip() else ())
    wait = guesses.wait_s(*keys)
    if wait > 0:  # not even compared: a script hammering the form learns nothing faster
        return f"Too many wrong passphrases or codes were tried. Wait {wait:.0f} s and try again."
    role = mode.role_for(passphrase)
    if role is None:
        wait = guesses.failed(client)
        return "That passphrase is not right." + (f" Wait {wait:.0f} s before the next try." if wait else "")
    try:
        joined = store.join_class(name, role, code=code)
    except WrongCode as exc:
        wait = guesses.failed(*keys)
        return escape_md(str(exc)) + (f". Wait {wait:.0f} s before the next try." if wait else ".")
    except NameTaken as exc:
        guesses.succeeded(client)  # the passphrase was right
        st.session_state[OFFER_KEY] = {"name": check_display_name(name), "role": role, "signed_in": exc.signed_in,
                                       "at": time.time()}
        return escape_md(str(exc)) + "."
    except ValueError as exc:  # the name itself (empty, too long, invisible characters)
        return escape_md(str(exc))
    guesses.succeeded(client)
    _signed_in(mode, joined)
    return None


def _offer(mode: ClassMode, store, offer: dict) -> None:
    """After a refused name (and a right passphrase): ask the teacher, or join as someone new under it."""
    # one under the other, full width: both labels whole on a 1024-pixel screen
    if st.button("Ask the teacher to let me back in", key="sign_in_ask", icon=":material/front_hand:",
                 width="stretch"):
        request_id = store.request_rejoin(offer["name"], offer["role"])
        st.session_state[WAIT_KEY] = {"request_id": request_id, "name": offer["name"]}
        st.session_state.pop(OFFER_KEY, None)
        st.rerun()
    if not offer["signed_in"] and st.button("Join as someone new under this name", key="sign_in_new",
                                            icon=":material/person_add:", width="stretch",
                                            help="You get your own rejoin code; the earlier runs under this name "
                                                 "stay theirs."):
        try:
            joined = store.join_class(offer["name"], offer["role"], new_member=True)
        except ValueError as exc:  # someone signed in under it meanwhile
            st.error(escape_md(str(exc)), icon=":material/error:")
            return
        st.session_state.pop(OFFER_KEY, None)
        _signed_in(mode, joined)
        st.rerun()


def _waiting(mode: ClassMode, store) -> None:
    wait = st.session_state[WAIT_KEY]
    st.info(f"Waiting for the teacher to let you back in as **{escape_md(wait['name'])}**. Raise your hand: your "
            "request is on their Class page.", icon=":material/front_hand:")

    @st.fragment(run_every=2.0)
    def answer() -> None:
        state = store.rejoin_answer(wait["request_id"])
        if state == "approved" and (joined := store.claim_rejoin(wait["request_id"])) is not None:
            st.session_state.pop(WAIT_KEY, None)
            _signed_in(mode, joined)
            st.rerun(scope="app")
        elif state in ("refused", "lapsed"):
            st.session_state.pop(WAIT_KEY, None)
            st.session_state[NOTE_KEY] = ("The teacher did not let you in under that name." if state == "refused" else
                                          "Your request to rejoin lapsed before the teacher answered. Ask again.")
            st.rerun(scope="app")
        else:
            st.caption("Still waiting...")

    answer()
    if st.button("Stop waiting", key="sign_in_stop_waiting"):
        store.withdraw_rejoin(wait["request_id"])
        st.session_state.pop(WAIT_KEY, None)
        st.rerun()


def _signed_in(mode: ClassMode, joined) -> None:
    token = mode.issue_seat(joined.actor, joined.seat_id)
    remember(joined.actor, joined.seat_id, token)
    st.query_params["seat"] = token
    if joined.code:
        st.session_state[CODE_KEY] = (joined.code, joined.rejoined)


def rejoin_code_notice() -> None:
    """The rejoin code of a student who just signed in, above the page until they say they have noted it."""
    shown = st.session_state.get(CODE_KEY)
    if not shown:
        return
    code, rejoined = shown
    with st.container(border=True, key="rejoin_code_notice"):
        st.markdown(("**Welcome back: your runs are yours again.** Your new rejoin code" if rejoined else
                     "**Your rejoin code**") + " (shown only now; copy it or write it down):")
        st.code(code, language=None)
        st.caption("With it you sign in as yourself again from another tab or laptop, and your runs stay yours. Keep "
                   "it to yourself: it is your key, like a password. Lost it? The teacher can let you back in.")
        if st.button("I have noted it", key="rejoin_code_noted", icon=":material/check:"):
            st.session_state.pop(CODE_KEY, None)
            st.rerun()
