"""What the policy's vision tokens know about the scene: its perception head, scored.

The perception head (``AlpamayoModel.perception_head``, trained on the simulator's
privileged state, :mod:`alpamayo_ros.perception`) reads the vision tokens. Scoring it
against the true targets tells whether the vision sees what the decisions depend on
(a lead vehicle, a red light, a crossing pedestrian), apart from the text. Each scene
field is printed next to the baseline that sees nothing: the majority answer for a
yes/no field, the median for a distance or speed:

    PYTHONPATH=. .venv/bin/python tools/perception_head_accuracy.py weights/default \
        --data artifacts/datasets/default --split test [--all-samples] [--max-samples N]
        [--signal-counterfactuals]

``--signal-counterfactuals`` scores only the frames drawn with every signal's red and green
exchanged (targets exchanged too): a head that reads the lamp scores there as on the real
frames, one that guesses the colour from the motion in the scene falls below the
no-vision baseline.

Only the scene fields are listed (the agent slots are left out). ``n`` is the number
of samples where the field is defined (a lead's gap only where there is a lead).
"""

from __future__ import annotations

import numpy as np
import torch
from head_inputs import policy_and_samples

from alpamayo_ros.perception import PERCEPTION_FIELDS, SCENE_FIELD_NAMES


def score_fields(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> list[dict]:
    """Per scene field: accuracy (binary) or mean absolute error in its unit (real).

    Each with the no-vision baseline, over the samples where the field is defined.
    ``pred`` has the head's entries (the first fields: weights older than a field lack it).
    """
    rows = []
    for j, field in enumerate(PERCEPTION_FIELDS[:pred.shape[1]]):
        if field.name not in SCENE_FIELD_NAMES:
            continue
        known = mask[:, j].astype(bool)
        if not known.any():
            continue
        if field.kind == "binary":
            truth = target[known, j] > 0.5
            share = float(truth.mean())
            rows.append({"field": field.name, "n": int(known.sum()), "metric": "accuracy",
                         "model": float(np.mean((pred[known, j] > 0.0) == truth)),
                         "baseline": max(share, 1.0 - share)})
        else:
            truth = target[known, j] * field.scale
            rows.append({"field": field.name, "n": int(known.sum()), "metric": "MAE",
                         "model": float(np.mean(np.abs(pred[known, j] * field.scale - truth))),
                         "baseline": float(np.mean(np.abs(truth - np.median(truth))))})
    return rows


def main() -> None:
    """Score the perception head of one weights directory on one split."""
    args, policy, data, indices = policy_and_samples(__doc__.splitlines()[0],
                                                     "perception_head",
                                                     counterfactual_option=True)
    rows = score_samples(policy, data, indices)
    what = ("signal counterfactuals" if args.signal_counterfactuals
            else "samples" if args.all_samples else "keyframes")
    print(f"{args.weights} on {args.split}: {len(indices)} {what}")
    if not args.signal_counterfactuals:
        print(f"{'field':22s} {'n':>5s} {'metric':>8s} {'model':>7s} {'no vision':>9s}")
        for r in rows:
            print(f"{r['field']:22s} {r['n']:5d} {r['metric']:>8s} {r['model']:7.3f} "
                  f"{r['baseline']:9.3f}")
        return
    # The same samples' real frames beside them: a head that reads the lamp scores alike.
    real = score_samples(policy, data, [int(data.offsets[e]) + j
                                        for e, j in map(data.locate, indices)])
    print(f"{'field':22s} {'n':>5s} {'metric':>8s} {'swapped':>8s} {'no vision':>9s} "
          f"{'real':>7s} {'no vision':>9s}")
    for r, q in zip(rows, real):
        print(f"{r['field']:22s} {r['n']:5d} {r['metric']:>8s} {r['model']:8.3f} "
              f"{r['baseline']:9.3f} {q['model']:7.3f} {q['baseline']:9.3f}")


def score_samples(policy, data, indices: list[int]) -> list[dict]:
    """:func:`score_fields` of the policy's perception head on ``data[indices]``."""
    model = policy.model
    preds, targets, masks = [], [], []
    for start in range(0, len(indices), 16):
        batch = [data[i] for i in indices[start:start + 16]]
        with torch.no_grad():
            tokens = model.encode_vision(policy.processor(batch))
            preds.append(model.perception_head(tokens).float().numpy())
        targets.append(np.nan_to_num(np.stack([s.perception for s in batch])))
        masks.append(np.stack([s.perception_mask for s in batch]))
    return score_fields(np.concatenate(preds), np.concatenate(targets), np.concatenate(masks))

if __name__ == "__main__":
    main()
