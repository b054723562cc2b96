"""How much of a policy's plan error comes from its reasoning: plans after the reference CoC.

For each labelled sample of a split the tool plans three times from the same prefix, at
the policy node's setting (flow from zero noise, the policy's default flow steps):

- **generated**: after the policy's own greedy reasoning (what ``alpamayo eval`` scores
  at ``--noise-scale 0``);
- **reference**: after the sample's reference CoC text fed in place of the generation
  (teacher forcing: the decision and causes are right by construction);
- **none**: trajectory mode (the reasoning closed at once).

and scores each plan's ADE and whether it hits the agents' true future boxes (the same
test as ``alpamayo eval``'s collision rate). If the reference reasoning removes most
collisions, the reasoning is what makes the plans collide; if not, the flow expert is.

    PYTHONPATH=. .venv/bin/python tools/reference_reasoning_plans.py weights/default \
        --data artifacts/datasets/default --split test [--all-samples] [--max-samples N]

Prints the three rows (ADE, collision rate over the samples with boxes) and the
collisions per family.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from head_inputs import policy_and_samples

from alpamayo_ros.eval import metrics
from alpamayo_ros.eval.evaluate import true_boxes
from alpamayo_ros.eval.scene import plan_collides
from alpamayo_ros.model import dynamics

ROWS = ("generated", "reference", "none")


def plans_of(policy, batch) -> dict[str, np.ndarray]:
    """``(B, 64, 3)`` plans of a batch of labelled samples for each row of :data:`ROWS`."""
    out = {row: policy.predict(batch, mode=mode, noise_scale=0.0, seed=0).states[:, 0, :, :3]
           for row, mode in (("generated", "reasoning"), ("none", "trajectory"))}
    model = policy.model
    plans = []
    with torch.no_grad():  # the reference text fed in place of the generation, one by one
        for sample in batch:
            inputs = policy.processor([sample])  # with targets: the reference reasoning ids
            ids = inputs.reasoning_ids[0][inputs.reasoning_valid[0]]
            ctx, _ = model.feed(model.prefill(inputs),
                                torch.cat([ids, torch.tensor([model.ids.coc_end])])[None])
            controls = model.flow_trajectory(ctx, model.config.expert.flow_steps,
                                             noise_scale=0.0)[:, 0]
            states = dynamics.integrate(controls[..., 0].double(), controls[..., 1].double(),
                                        inputs.speed_mps.double())
            plans.append(states[0, :, :3].numpy())
    out["reference"] = np.stack(plans)
    return out


def main() -> None:
    """Score the three rows on one split and print them."""
    args, policy, data, indices = policy_and_samples(__doc__.splitlines()[0],
                                                     "expert")
    ade: dict[str, list[float]] = {r: [] for r in ROWS}
    hits: dict[str, list[bool]] = {r: [] for r in ROWS}
    by_family: dict[str, Counter] = {r: Counter() for r in ROWS}
    labelled = [i for i in indices if data[i].coc is not None]
    for start in range(0, len(labelled), 8):
        batch = [data[i] for i in labelled[start:start + 8]]
        plans = plans_of(policy, batch)
        for j, sample in enumerate(batch):
            boxes, _ = true_boxes(sample)
            future = np.asarray(sample.future_xyh, np.float64)
            for row in ROWS:
                plan = plans[row][j]
                ade[row].append(metrics.ade(plan, future))
                if boxes is not None:
                    hit = bool(plan_collides(plan, boxes)[0])
                    hits[row].append(hit)
                    by_family[row][sample.meta.get("family", "?")] += hit
    n_boxes = len(hits[ROWS[0]])
    print(f"{args.weights} on {args.split}: {len(labelled)} labelled samples "
          f"({n_boxes} with the agents' true futures)")
    for row in ROWS:
        print(f"  {row:9s} ADE {np.mean(ade[row]):.3f} m, collisions "
              f"{sum(hits[row])} ({100.0 * np.mean(hits[row]):.1f} %)")
    families = sorted(set().union(*by_family.values()))
    print("  collisions per family (" + " / ".join(ROWS) + "):")
    for fam in families:
        counts = [by_family[r][fam] for r in ROWS]
        if any(counts):
            print(f"    {fam}: " + " / ".join(str(c) for c in counts))


if __name__ == "__main__":
    main()
