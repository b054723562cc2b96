"""A ceiling for decision accuracy at the keyframes: decisions from perfect perception.

A small MLP classifies the (longitudinal, lateral) decision from the simulator's
privileged state instead of the cameras (the perception target vector and its mask,
:mod:`alpamayo_ros.perception`), the ego history and the navigation command (bag of
words). It is trained on every sample of the train split (class-balanced as the
policy's stages sample, or ``--unbalanced``) and scored on the test keyframes, where the
decision has just changed, and on every test sample. What it misses at the keyframes
with perfect perception, the policy cannot get from better vision: the moment of a
change depends on the expert's thresholds and timers:

    PYTHONPATH=. .venv/bin/python tools/decision_oracle.py --data artifacts/datasets/default \
        [--without history] [--without perception] [--without navigation]

Prints accuracy per channel (keyframes and all samples) and the majority-class figures.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import torch

from alpamayo_ros.data.episodes import EpisodeDataset, _read_meta
from alpamayo_ros.taxonomy import LATERAL_CLASSES, LONGITUDINAL_CLASSES

FEATURE_GROUPS = ("perception", "history", "navigation")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def features(data: EpisodeDataset, vocabulary: list[str], use: set[str]) -> np.ndarray:
    """Float ``(N, F)``: the chosen feature groups of every sample of ``data``."""
    parts = []
    if "perception" in use:
        mask = data._concat("perception_mask").astype(np.float32)
        parts += [np.nan_to_num(data._concat("perception")) * mask, mask]
    if "history" in use:
        hist = data._concat("ego_history").astype(np.float32)  # (N, T, 4): x, y, heading, v
        parts.append((hist / np.array([20.0, 2.0, 0.2, 15.0], np.float32)).reshape(len(hist), -1))
    if "navigation" in use:
        rows = []
        for e in data.episodes:
            words = set(_words(str(_read_meta(Path(e["dir"])).get("navigation", ""))))
            bow = np.array([w in words for w in vocabulary], np.float32)
            rows.append(np.repeat(bow[None], e["samples"], axis=0))
        parts.append(np.concatenate(rows))
    return np.concatenate(parts, axis=1)


def train_classifier(x: np.ndarray, y: np.ndarray, classes: int, steps: int, seed: int,
                     balanced: bool = True) -> torch.nn.Module:
    """An MLP trained on class-balanced batches, or on uniform ones.

    Balanced: the rarer classes are drawn as often as the common ones.
    """
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.GELU(),
                              torch.nn.Linear(256, 256), torch.nn.GELU(),
                              torch.nn.Linear(256, classes))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    weights = 1.0 / np.maximum(counts[y], 1.0) if balanced else np.ones(len(y))
    rng = np.random.default_rng(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for step in range(steps):
        idx = torch.from_numpy(rng.choice(len(x), 256, p=weights / weights.sum()))
        loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        for g in opt.param_groups:
            g["lr"] = 1e-3 * (1.0 - step / steps) + 1e-5
    return net.eval()


def main() -> None:
    """Train the oracle per channel on the train split and score it on the test split."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="artifacts/datasets/default")
    parser.add_argument("--without", nargs="*", default=[], choices=FEATURE_GROUPS)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unbalanced", action="store_true",
                        help="uniform batches instead of class-balanced ones")
    args = parser.parse_args()
    use = set(FEATURE_GROUPS) - set(args.without)
    train = EpisodeDataset(args.data, "train")
    test = EpisodeDataset(args.data, "test")
    vocabulary = sorted({w for t in train.navigation_texts() for w in _words(t)})
    x_train, x_test = features(train, vocabulary, use), features(test, vocabulary, use)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    y_train, y_test = train.decision_ids(), test.decision_ids()
    key = test.keyframe_mask()
    print(f"features: {sorted(use)} ({x_train.shape[1]}), train samples {len(x_train)}, "
          f"test samples {len(x_test)}, test keyframes {int(key.sum())}")
    for c, (name, classes) in enumerate((("longitudinal", LONGITUDINAL_CLASSES),
                                         ("lateral", LATERAL_CLASSES))):
        ok = y_train[:, c] >= 0
        net = train_classifier(x_train[ok].astype(np.float32), y_train[ok, c], len(classes),
                               args.steps, args.seed, not args.unbalanced)
        with torch.no_grad():
            pred = net(torch.from_numpy(x_test.astype(np.float32))).argmax(1).numpy()
        right = pred == y_test[:, c]
        majority = np.bincount(y_train[ok, c]).argmax()
        print(f"{name}: keyframes {right[key].mean():.3f} (majority "
              f"{(y_test[key, c] == majority).mean():.3f}), all samples {right.mean():.3f}")
        for k in np.unique(y_test[key, c]):
            sel = key & (y_test[:, c] == k)
            print(f"  {classes[k]:28s} {int(right[sel].sum()):3d} / {int(sel.sum())}")


if __name__ == "__main__":
    main()
