"""The Streamlit glue every page uses: the cached handles (store, runner, caches), who the user is, the live
fragments, projector mode and the one way pages show a chart. May import streamlit, app/charts/ and app/server/;
never a page part or a page."""
