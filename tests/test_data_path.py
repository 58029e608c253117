"""One data path: every reader of a run's data (training, the Explain page, the Run report's thumbnails and links)
gets the split training used, whatever the run's seed.

A run's seed moves its initialisation and data order, never its validation images: before `load_run_split`
the Explain page loaded the split with the run's seed, so for every seed != 0 run its "validation sample" and
"misclassified" lists came from another split (one holding training images), and a report link opened the
wrong image.
"""

from __future__ import annotations

import torch

from engine import records
from engine.checkpoints import load_run_model
from engine.config import RunConfig
from engine.data.loading import cached_run_split, load_run_split, normalize
from engine.explain.render import load_subject, run_split
from engine.train import MemorySink, train

SEEDED = dict(dataset="mnist5k", model="mlp", hidden=32, depth=1, epochs=1, train_limit=400, val_fraction=0.1,
              layer_stats_every=0, seed=7)


def test_every_seed_of_a_config_gets_the_same_split():
    seeded = load_run_split(RunConfig(**SEEDED))
    other = load_run_split(RunConfig(**{**SEEDED, "seed": 123}))
    assert torch.equal(seeded.val_x, other.val_x) and torch.equal(seeded.train_y, other.train_y)
    # the Explain page's cached split is the very same data
    assert torch.equal(run_split(RunConfig(**SEEDED)).val_x, seeded.val_x)
    assert cached_run_split(RunConfig(**SEEDED)) is cached_run_split(RunConfig(**{**SEEDED, "seed": 3}))


def test_a_seeded_runs_misclassified_images_are_the_ones_the_explain_page_opens(trainlens_home):
    config = RunConfig(**SEEDED)
    sink = MemorySink()
    train(config, sink, run_id="seeded")
    report = sink.artifacts[records.report_artifact("last")]
    assert report["misclassified"], "a one-epoch MLP should make some mistakes to list"

    # what the Explain page shows for ?run=seeded&sample=INDEX: the run's split, prepared as its subject says
    split = run_split(config)
    assert len(split.val_y) == report["n"]
    model, _, _, _ = load_run_model("seeded", "last")
    subject = load_subject("seeded", "last")
    for item in report["misclassified"][:20]:
        index = item["index"]
        assert int(split.val_y[index]) == item["true"]
        image = normalize(split.val_x[index:index + 1], subject.spec.mean, subject.spec.std)
        with torch.no_grad():
            probs = torch.softmax(model(image), dim=1)[0]
        # the model, shown that image, makes exactly the mistake the report lists, with the same confidence
        assert int(probs.argmax()) == item["pred"]
        assert abs(float(probs[item["pred"]]) - item["confidence"]) < 1e-4
