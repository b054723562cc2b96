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


def policy_and_samples(description: str, head: str, counterfactual_option: bool = False
                       ) -> tuple[argparse.Namespace, Policy, Any, list[int]]:
    """Parse the command line; return it, the policy, the dataset and the indices to score.

    ``head``: the model attribute the tool scores; a model without it ends the tool.
    ``counterfactual_option``: offer ``--signal-counterfactuals`` (score only the split's
    signal counterfactuals: frames with red and green exchanged, targets exchanged too).
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
    if counterfactual_option:
        parser.add_argument("--signal-counterfactuals", action="store_true",
                            help="only the signal counterfactuals (needs a dataset built with "
                                 "signal_counterfactuals: true)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    policy = Policy.from_pretrained(args.weights, device="cpu")
    if getattr(policy.model, head, None) is None:
        raise SystemExit(f"{args.weights}: the model has no {head}")
    if getattr(args, "signal_counterfactuals", False):
        from alpamayo_ros.data.episodes import EpisodeDataset
        from alpamayo_ros.eval.commands import evenly_spaced

        data = EpisodeDataset(args.data, args.split, signal_counterfactuals=True)
        indices = evenly_spaced(list(range(data.base_size, len(data))), args.max_samples)
        if not indices:
            raise SystemExit(f"{args.data}/{args.split} has no signal counterfactuals")
        return args, policy, data, indices
    data, _ = open_dataset(args.data, args.split)
    indices, _ = select_samples(data, not args.all_samples, None, None, args.max_samples)
    return args, policy, data, indices
