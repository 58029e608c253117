"""Where runs execute, as the pages show it: a run's node and device, and the Ray cluster's free resources.

A Ray task files a `placement` artifact when it starts (node, device, process); the Ray dispatcher writes a
snapshot of the cluster (nodes, total and free CPUs/GPUs) to TRAINLENS_HOME/ray_cluster.json every few seconds.
Torch-free and Ray-free: the Runs page reads both without importing either.
"""

from __future__ import annotations

import json
import os
import time

from engine.paths import trainlens_home
from engine.records import PLACEMENT
CLUSTER_FILE = "ray_cluster.json"


def placements(store, run_ids: list[str]) -> dict[str, dict]:
    """run_id -> its placement artifact, for the runs that have one (a few queries for all of them). A damaged row:
    the run shows as if it had no placement."""
    return {run_id: value for run_id, value in store.artifact_values(PLACEMENT, run_ids).items()
            if isinstance(value, dict)}


def runs_on(placement: dict | None, device: str | None) -> str:
    """One short line: 'ray 10.0.0.7 (3f2a91c0) cuda:0' for a Ray run, 'local cpu' for a local worker's."""
    if not placement:
        return f"local {device}" if device else ""
    device_text = str(placement.get("device", device or ""))
    gpus = placement.get("gpu_ids") or []
    if device_text == "cuda" and gpus:
        device_text = f"cuda (GPU {','.join(map(str, gpus))})"
    node = str(placement.get("node_ip") or placement.get("host") or "?")
    node_id = str(placement.get("node_id") or "")[:8]
    return f"{placement.get('executor', 'ray')} {node}{f' ({node_id})' if node_id else ''} {device_text}".strip()


def cluster_path():
    return trainlens_home() / CLUSTER_FILE


def read_cluster() -> dict | None:
    """The last cluster snapshot a Ray dispatcher wrote (None when there is none or it is unreadable)."""
    try:
        snapshot = json.loads(cluster_path().read_text())
    except (OSError, ValueError):
        return None
    return snapshot if isinstance(snapshot, dict) else None


def write_cluster(snapshot: dict) -> None:
    path = cluster_path()
    staging = path.with_name(f".{path.name}.{os.getpid()}.partial")
    staging.write_text(json.dumps(snapshot))
    os.replace(staging, path)  # readers never see half a file


def cluster_summary(snapshot: dict | None, now: float | None = None) -> str | None:
    """One sentence about the Ray cluster for the Runs page; None when no dispatcher ever wrote a snapshot."""
    if not snapshot:
        return None
    age = max(0.0, (now or time.time()) - float(snapshot.get("time", 0)))
    if snapshot.get("error"):
        return f"Ray: {snapshot['error']}"
    total, free = snapshot.get("total", {}), snapshot.get("available", {})
    alive = [n for n in snapshot.get("nodes", []) if n.get("alive")]
    parts = [f"{free.get('CPU', 0):g} of {total.get('CPU', 0):g} CPUs free"]
    if total.get("GPU"):
        parts.append(f"{free.get('GPU', 0):g} of {total.get('GPU', 0):g} GPUs free")
    text = (f"Ray cluster at {snapshot.get('address', '?')}: {len(alive)} node(s), {', '.join(parts)}; "
            f"{snapshot.get('running', 0)} run(s) training, {snapshot.get('waiting', 0)} waiting for resources")
    return text + (f" (as of {age:.0f} s ago)" if age >= 10 else "")
