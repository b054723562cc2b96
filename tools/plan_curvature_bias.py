"""Steering bias of a policy's plans on lane keeping, against the expert's.

In closed loop a plan that curves a little where the road is straight makes the car
drift out of its lane unless the next plans steer it back. This tool measures that bias
in open loop: over the samples whose lateral decision is ``lane_keeping``, the mean
commanded curvature of the first :data:`HORIZON_STEPS` (2 s) of the plan at the policy node's
setting (greedy reasoning or trajectory mode, flow from zero noise) and of the expert's
future, per family and over all of them (positive: to the left).

    PYTHONPATH=. .venv/bin/python tools/plan_curvature_bias.py weights/default \
        --data artifacts/datasets/default --split test --all-samples --max-samples 480

Prints one line per family: samples, the plan's and the expert's mean curvature (1/m)
in reasoning mode and in trajectory mode.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from head_inputs import policy_and_samples

from alpamayo_ros.eval.evaluate import truth_decisions

MODES = ("reasoning", "trajectory")
HORIZON_STEPS = 20  # the first 2 s of the plan (the controller follows the newest plan)


def main() -> None:
    """Print the mean curvatures per family."""
    args, policy, data, indices = policy_and_samples(__doc__.splitlines()[0], "expert")
    rows: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    for start in range(0, len(indices), 16):
        batch = [data[i] for i in indices[start:start + 16]]
        keep = [j for j, s in enumerate(batch)
                if (truth_decisions(s) or (None, None))[1] == "lane_keeping"]
        if not keep:
            continue
        batch = [batch[j] for j in keep]
        plans = {mode: policy.predict(batch, mode=mode, noise_scale=0.0, seed=0).controls
                 for mode in MODES}
        for j, sample in enumerate(batch):
            expert = float(np.asarray(sample.future_controls)[:HORIZON_STEPS, 1].mean())
            values = [float(plans[m][j, 0, :HORIZON_STEPS, 1].mean()) for m in MODES]
            rows[str((sample.meta or {}).get("family", "?"))].append((*values, expert))
    if not rows:
        raise SystemExit("no lane-keeping samples")
    print(f"{args.weights} on {args.split}: mean curvature (1/m) of the first "
          f"{HORIZON_STEPS} plan steps on lane keeping, noise 0")
    print(f"{'family':28s} {'n':>4s} {'reasoning':>10s} {'trajectory':>10s} {'expert':>10s}")
    every = []
    for family, values in sorted(rows.items()):
        v = np.asarray(values)
        every.append(v)
        print(f"{family:28s} {len(v):4d} " + " ".join(f"{x:10.5f}" for x in v.mean(0)))
    v = np.concatenate(every)
    print(f"{'all':28s} {len(v):4d} " + " ".join(f"{x:10.5f}" for x in v.mean(0)))


if __name__ == "__main__":
    main()
