"""The Train preview's lines on what a run trains: the run it starts from (`init_from`) and, when some weights stay
fixed, the trainable, frozen and adapter parameter counts (engine.transfer's, counted on torch's meta device)."""

from __future__ import annotations

from app.charts.text import escape_md
from app.ui.state import get_store
from engine.config import RunConfig


def transfer_lines(config: RunConfig, counts: dict[str, int] | None) -> str:
    """The preview's lines on what trains: the run it starts from, and the trainable, frozen and adapter counts
    when some weights are frozen (markdown lines, each ending in a line break; "" for a run from random weights)."""
    lines = []
    if config.init_from:
        found = get_store().find_run(config.init_from.partition(":")[0])
        source = get_store().get_run(found) if found else None
        name = escape_md(source["name"]) if source else escape_md(config.init_from)
        which = config.init_from.partition(":")[2] or "best"
        lines.append(f"starts from **{name}** ({which} weights)")
    if counts and (counts["frozen"] or counts["adapter"]):
        adapter = f", **{counts['adapter']:,}** of them in adapters" if counts["adapter"] else ""
        lines.append(f"**{counts['trainable']:,}** trainable{adapter} · **{counts['frozen']:,}** frozen")
    return "".join(f"{line}  \n" for line in lines)
