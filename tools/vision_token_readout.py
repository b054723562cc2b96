"""What a linear reader finds in a policy's vision tokens: ridge readouts of scene fields.

The perception head reads the vision tokens through its own pooling, so a field it gets
wrong may still be in the tokens (where the backbone and the expert can read it) or may
not be there at all. This tool asks a linear reader instead: all vision tokens of a
sample, flattened, standardised, a ridge regression to one real perception field, fitted
on the samples of the lower half of the split's seeds and scored on the upper half
(different scenarios), next to the blind answer (the fitted half's median):

    PYTHONPATH=. .venv/bin/python tools/vision_token_readout.py weights/default \
        --data artifacts/datasets/default --split train --all-samples --max-samples 5000

The train split carries the recovery starts (the ego put off its lane centre with a
heading error), so it is the split with lateral offsets and heading errors to read.
Prints per field and regularisation the mean absolute error in the field's unit.
"""

from __future__ import annotations

import numpy as np
import torch
from head_inputs import policy_and_samples

from alpamayo_ros.eval.commands import sample_metas
from alpamayo_ros.perception import PERCEPTION_FIELDS, PERCEPTION_INDEX

FIELDS = ("ego_heading_error", "ego_lateral_offset", "curvature_20m", "curvature_50m",
          "lane_center_y_10m", "lane_center_y_20m", "lane_center_y_40m")
RIDGE = (10.0, 100.0, 1000.0, 10000.0)


def ridge_readouts(features: np.ndarray, targets: np.ndarray, fit: np.ndarray,
                   lams: tuple[float, ...]) -> dict[float, np.ndarray]:
    """Predictions for every row, per regularisation, from ridge fits on the rows ``fit``.

    Inputs standardised with the fitted rows' statistics; targets centred on their mean.
    """
    mean, std = features[fit].mean(0), features[fit].std(0) + 1e-6
    a = (features - mean) / std
    offset = targets[fit].mean(0)
    gram, rhs = a[fit].T @ a[fit], a[fit].T @ (targets[fit] - offset)
    eye = np.eye(a.shape[1])
    return {lam: a @ np.linalg.solve(gram + lam * eye, rhs) + offset for lam in lams}


def main() -> None:
    """Print the readout errors of each field."""
    args, policy, data, indices = policy_and_samples(__doc__.splitlines()[0], "vision")
    metas = sample_metas(data)
    columns = [PERCEPTION_INDEX[name] for name in FIELDS]
    features, targets, known, seeds = [], [], [], []
    for start in range(0, len(indices), 32):
        batch = [data[i] for i in indices[start:start + 32]]
        with torch.no_grad():
            tokens = policy.model.encode_vision(policy.processor(batch, with_targets=False))
        features.append(tokens.float().reshape(len(batch), -1).numpy())
        targets.append(np.stack([[s.perception[j] * PERCEPTION_FIELDS[j].scale
                                  for j in columns] for s in batch]))
        known.append(np.stack([[bool(s.perception_mask[j]) for j in columns] for s in batch]))
        seeds.extend(int(metas[i]["seed"]) for i in indices[start:start + 32])
    x, y, m = np.concatenate(features), np.concatenate(targets), np.concatenate(known)
    seed = np.array(seeds)
    fit = seed < np.median(seed)
    if fit.all() or not fit.any():
        raise SystemExit("the samples' seeds do not split in two halves")
    print(f"{args.weights} on {args.split}: {len(indices)} samples, {x.shape[1]} features; "
          f"fit on {int(fit.sum())} (seeds < {np.median(seed):g}), scored on "
          f"{int((~fit).sum())}")
    predictions = ridge_readouts(x, y, fit, RIDGE)
    print(f"{'field':20s} {'blind':>8s} " + " ".join(f"{'ridge ' + format(lam, 'g'):>12s}"
                                                      for lam in RIDGE))
    for k, name in enumerate(FIELDS):
        score = ~fit & m[:, k]
        blind = np.abs(y[score, k] - np.median(y[fit & m[:, k], k])).mean()
        errors = [np.abs(predictions[lam][score, k] - y[score, k]).mean() for lam in RIDGE]
        print(f"{name:20s} {blind:8.4f} " + " ".join(f"{e:12.4f}" for e in errors))


if __name__ == "__main__":
    main()
