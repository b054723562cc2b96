"""The command line shared by the tools that score a policy's auxiliary heads on a split.

``tools/decision_head_accuracy.py`` and ``tools/perception_head_accuracy.py`` take the
same arguments (a weights directory, the dataset, the split, keyframes or every sample,
a cap) and need the same things from them: the policy and the samples to score.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from alpamayo_ros.eval.commands import open_dataset, select_samples
from alpamayo_ros.model.policy import Policy


def policy_and_samples(description: str, head: str) -> tuple[argparse.Namespace, Policy, Any,
                                                              list[int]]:
    """Parse the command line; return it, the policy, the dataset and the indices to score.

    ``head``: the model attribute the tool scores; a model without it ends the tool.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("weights", help="exported weights or checkpoint directory")
    parser.add_argument("--data", default="artifacts/datasets/default")
    parser.add_argument("--split", default="test")
    parser.add_argument("--all-samples", action="store_true",
                        help="every sample, not only the CoC keyframes")
    parser.add_argument("--max-samples", type=int, default=0,
                        help="evenly spaced cap (0: all)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    policy = Policy.from_pretrained(args.weights, device="cpu")
    if getattr(policy.model, head, None) is None:
        raise SystemExit(f"{args.weights}: the model has no {head}")
    data, _ = open_dataset(args.data, args.split)
    indices, _ = select_samples(data, not args.all_samples, None, None, args.max_samples)
    return args, policy, data, indices
