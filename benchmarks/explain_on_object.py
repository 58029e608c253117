"""On-object share of attribution maps: how many of a map's top pixels fall on the object.

Trains a convnet (and a small resnet) for a few seconds on `mnist5k` and `shapes`, then for each method
measures, over validation images the model gets right, the share of the top-k attributed pixels (k = the
object's area) inside the object: the `shapes` ground-truth masks, the ink of MNIST digits (pixel > 0.5).
Chance is the object's share of the image. Grad-CAM is measured twice: stretched over the input (plain
bilinear upsampling, what TrainLens did before) and placed by receptive fields (engine.explain.geometry).

    PYTHONPATH=. python benchmarks/explain_on_object.py [--images 60] [--steps 400] [--models convnet,resnet]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam

from engine.data.loading import load_dataset, normalize
from engine.explain.methods import explain
from engine.explain.quality import mask_score
from engine.models import build_model

METHODS = ("saliency", "integrated_gradients", "guided_backprop", "occlusion", "grad_cam", "guided_grad_cam")


def train(dataset: str, model_name: str, steps: int):
    split = load_dataset(dataset, seed=0)
    x, y = normalize(split.train_x, split.mean, split.std), split.train_y
    torch.manual_seed(0)
    model = build_model(model_name, channels=x.shape[1], size=x.shape[-1], num_classes=int(y.max()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        index = torch.randint(0, len(x), (64,), generator=generator)
        loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), split


def stretched_cam(model, x, target):
    cam = LayerGradCam(model, model.target_layer).attribute(x, target=target, relu_attributions=True)
    return F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--models", default="convnet")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for model_name in args.models.split(","):
        for dataset in ("mnist5k", "shapes"):
            model, split = train(dataset, model_name, args.steps)
            val_x = normalize(split.val_x, split.mean, split.std)
            with torch.no_grad():
                correct = torch.where(model(val_x).argmax(1) == split.val_y)[0][:args.images]
            accuracy = float((model(val_x).argmax(1) == split.val_y).float().mean())
            masks = split.val_masks if split.val_masks is not None else split.val_x.mean(1) > 0.5
            black = normalize(torch.zeros(1, *split.val_x.shape[1:]), split.mean, split.std)
            shares: dict[str, list[float]] = {m: [] for m in ("grad_cam (stretched)", *METHODS)}
            chance = []
            for i in correct.tolist():
                x, target, mask = val_x[i:i + 1], int(split.val_y[i]), masks[i]
                chance.append(mask_score(torch.ones_like(x[0]), mask).chance)
                shares["grad_cam (stretched)"].append(mask_score(stretched_cam(model, x, target), mask).share)
                for method in METHODS:
                    params = {"baseline": black} if method in ("integrated_gradients", "occlusion") else {}
                    shares[method].append(mask_score(explain(model, x, target, method, **params), mask).share)
            print(f"\n{model_name} on {dataset} (val accuracy {accuracy:.1%}, {len(correct)} images, "
                  f"chance {np.mean(chance):.1%})")
            for method, values in shares.items():
                print(f"  {method:24s} {np.mean(values):6.1%}")


if __name__ == "__main__":
    main()
