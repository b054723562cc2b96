"""Accuracy of a policy's auxiliary decision heads, as docs/RESULTS.md reports it.

The decision heads (``AlpamayoModel.decision_head``, trained beside the text, unused at
inference) classify the (longitudinal, lateral) decision from the hidden state at the
``<coc>`` position. Their accuracy tells whether the representation holds the decision,
apart from whether the generated text names it (``alpamayo eval`` scores the text):

    PYTHONPATH=. .venv/bin/python tools/decision_head_accuracy.py weights/default \
        --data artifacts/datasets/default --split test [--all-samples] [--max-samples N]

Prints the accuracy per channel and, per true longitudinal class, correct / total.
"""

from __future__ import annotations

from collections import Counter

import torch
from head_inputs import policy_and_samples

from alpamayo_ros.eval.evaluate import truth_decisions
from alpamayo_ros.taxonomy import LATERAL_CLASSES, LONGITUDINAL_CLASSES


def main() -> None:
    """Score the decision heads of one weights directory on one split."""
    args, policy, data, indices = policy_and_samples(__doc__.splitlines()[0], "decision_head")
    model = policy.model
    n_lon = len(LONGITUDINAL_CLASSES)
    right, total = [0, 0], 0
    per_class: Counter = Counter()
    per_class_right: Counter = Counter()
    for start in range(0, len(indices), 16):
        batch = [data[i] for i in indices[start:start + 16]]
        inputs = policy.processor(batch)
        with torch.no_grad():
            hidden, _, _ = model.encode_prefix(inputs)
            logits = model.decision_head(hidden[:, -1]).float()  # the <coc> position
        for j, sample in enumerate(batch):
            truth = truth_decisions(sample)
            if truth is None:
                continue
            lon = LONGITUDINAL_CLASSES[int(logits[j, :n_lon].argmax())]
            lat = LATERAL_CLASSES[int(logits[j, n_lon:].argmax())]
            right[0] += lon == truth[0]
            right[1] += lat == truth[1]
            total += 1
            per_class[truth[0]] += 1
            per_class_right[truth[0]] += lon == truth[0]
    if total == 0:
        raise SystemExit("no sample with decision labels")
    print(f"{args.weights} on {args.split} ({total} samples): longitudinal "
          f"{right[0] / total:.3f}, lateral {right[1] / total:.3f}")
    for name, count in per_class.most_common():
        print(f"  {name}: {per_class_right[name]} / {count}")


if __name__ == "__main__":
    main()
