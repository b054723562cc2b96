"""Can an image encoder learn to see one scene field? A quick probe on the cameras alone.

Trains an encoder and a head from scratch on a single binary perception field (default
``lead_present``, :mod:`alpamayo_ros.perception`) of the train split, nothing else, and
prints the accuracy on val samples next to the majority answer every ``--eval-every``
steps. It separates "the field is hard to see in these images" from "this encoder does
not learn it" in minutes, without training a policy:

- ``--encoder tokenizer``: the policy's own path, a preset's ``VisionTokenizer`` and the
  model's ``PerceptionHead``, with the model's options (:class:`~alpamayo_ros.model.
  configuration.VisionConfig`): ``--stem linear|conv`` (``VisionConfig.stem``),
  ``--fusion queries|grid`` (``VisionConfig.fusion`` ``queries`` / ``camera_grid``: a max
  over each camera's patch grid in 2 x 3 cells, the same 24 tokens a frame for 4 cameras),
  ``--head perception|max`` (``PolicyConfig.perception_pooling`` ``attention`` / ``max``).
  ``--without blocks`` sets ``encoder_layers`` to 0; ``--without geometry`` (probe only)
  leaves out the camera-geometry encoding. Until session 11 these were probe-only
  variants and ``--head max`` a linear layer on the max; session 10's figures in
  docs/RESULTS.md were made with that version.
- ``--encoder cnn``: a 4-layer strided CNN with a global max over space and cameras, the
  simplest detector, as the reference.

    PYTHONPATH=. .venv/bin/python tools/vision_probe.py --encoder cnn --cameras front_tele \
        --batch-size 16 --steps 600
    PYTHONPATH=. .venv/bin/python tools/vision_probe.py --encoder tokenizer --steps 2000

The last history frame is used by ``cnn``; ``tokenizer`` reads every frame, as the
policy does.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from alpamayo_ros.data.episodes import EpisodeDataset
from alpamayo_ros.perception import PERCEPTION_FIELDS, PERCEPTION_INDEX


class MaxPoolCnn(nn.Module):
    """Four strided 3x3 convolutions, a max over space and cameras, one logit."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width // 4, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(width // 4, width // 2, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(width // 2, width, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(width, width, 3, 2, 1), nn.SiLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.out = nn.Linear(width, 1)

    def forward(self, images: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
        """``(B, F, C, 3, H, W)`` uint8 -> ``(B,)`` logits from the last frame."""
        x = images[:, -1].float() / 255.0
        b, c = x.shape[:2]
        return self.out(self.features(x.flatten(0, 1)).view(b, c, -1).max(1).values)[:, 0]


class _NoGeometry(nn.Module):
    """Stands in for the tokenizer's geometry MLP: adds nothing (``--without geometry``)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Zeros shaped like the geometry encoding's output (hidden size from the caller)."""
        return features.new_zeros(())


class TokenizerProbe(nn.Module):
    """The policy's vision tokenizer and perception head, read at one field."""

    def __init__(self, preset_name: str, field: int, stem: str, fusion: str,
                 without: tuple[str, ...] = (), head: str = "perception") -> None:
        super().__init__()
        from alpamayo_ros.model.configuration import preset
        from alpamayo_ros.model.modeling import PerceptionHead
        from alpamayo_ros.model.vision import VisionTokenizer
        from alpamayo_ros.perception import PERCEPTION_DIM

        vision = {"stem": stem, "fusion": "camera_grid" if fusion == "grid" else "queries"}
        if "blocks" in without:
            vision["encoder_layers"] = 0
        cfg = preset(preset_name, vision=vision,
                     perception_pooling="max" if head == "max" else "attention")
        d_model = cfg.backbone.hidden_size
        self.vision = VisionTokenizer(cfg.vision, d_model)
        if "geometry" in without:
            self.vision.geometry = _NoGeometry()
        self.head = PerceptionHead(d_model, PERCEPTION_DIM, cfg.perception_queries,
                                   cfg.perception_pooling)
        self.field = field

    def forward(self, images: torch.Tensor, valid: torch.Tensor, intrinsics: torch.Tensor,
                camera_to_ego: torch.Tensor) -> torch.Tensor:
        """``(B, F, C, 3, H, W)`` uint8 and the rig -> ``(B,)`` logits."""
        return self.head(self.vision(images, valid, intrinsics, camera_to_ego))[:, self.field]


def load_batch(data: EpisodeDataset, indices: np.ndarray, cameras: list[int] | None,
               field: int) -> tuple[torch.Tensor, ...]:
    """Images ``(B, F, C, 3, H, W)``, camera validity, intrinsics, extrinsics, targets."""
    samples = [data[int(i)] for i in indices]
    pick = cameras if cameras is not None else list(range(len(samples[0].cameras)))
    images = torch.from_numpy(np.stack([s.images[:, pick] for s in samples]))
    images = images.permute(0, 1, 2, 5, 3, 4).contiguous()
    intrinsics = torch.tensor(np.stack([[s.cameras[c].intrinsics for c in pick]
                                        for s in samples]), dtype=torch.float32)
    extrinsics = torch.tensor(np.stack([[s.cameras[c].camera_to_ego for c in pick]
                                        for s in samples]), dtype=torch.float32)
    valid = torch.ones(len(samples), len(pick), dtype=torch.bool)
    target = torch.tensor([float(s.perception[field] > 0.5) for s in samples])
    return images, valid, intrinsics, extrinsics, target


def defined_indices(data: EpisodeDataset, field: int) -> np.ndarray:
    """Indices of the split's samples where ``field`` is defined (its perception mask)."""
    out = []
    for e, info in enumerate(data.episodes):
        known = np.load(f"{info['dir']}/perception_mask.npy", allow_pickle=False)[:, field]
        out.append(data.offsets[e] + np.flatnonzero(known))
    return np.concatenate(out)


def main() -> None:
    """Train one probe and print its val accuracy over the steps."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="artifacts/datasets/default")
    parser.add_argument("--encoder", choices=("tokenizer", "cnn"), default="tokenizer")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--stem", choices=("linear", "conv"), default="linear")
    parser.add_argument("--fusion", choices=("queries", "grid"), default="queries")
    parser.add_argument("--without", nargs="*", default=[], choices=("geometry", "blocks"))
    parser.add_argument("--head", choices=("perception", "max"), default="perception")
    parser.add_argument("--field", default="lead_present",
                        choices=[f.name for f in PERCEPTION_FIELDS if f.kind == "binary"])
    parser.add_argument("--cameras", default="all", help="all, or comma-separated names")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--val-samples", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--defined-only", action="store_true",
                        help="train and score only where the field is defined (light_red: "
                             "where a light is ahead)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    field = PERCEPTION_INDEX[args.field]
    train, val = EpisodeDataset(args.data, "train"), EpisodeDataset(args.data, "val")
    names = [c.name for c in train[0].cameras]
    cameras = None if args.cameras == "all" else [names.index(n) for n in
                                                  args.cameras.split(",")]
    model = (MaxPoolCnn() if args.encoder == "cnn"
             else TokenizerProbe(args.preset, field, args.stem, args.fusion,
                                 tuple(args.without), args.head))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    rng = np.random.default_rng(args.seed)
    train_pool = defined_indices(train, field) if args.defined_only else np.arange(len(train))
    val_pool = defined_indices(val, field) if args.defined_only else np.arange(len(val))
    val_idx = rng.choice(val_pool, min(args.val_samples, len(val_pool)), replace=False)
    val_batches = [load_batch(val, val_idx[i:i + 32], cameras, field)
                   for i in range(0, len(val_idx), 32)]
    truth = torch.cat([b[-1] for b in val_batches])
    majority = float(max(truth.mean(), 1.0 - truth.mean()))
    what = (f"{args.stem} stem, {args.fusion} fusion"
            + "".join(f", no {w}" for w in args.without)
            + (", max head" if args.head == "max" else "")
            if args.encoder == "tokenizer" else "max")
    print(f"{args.encoder} ({what}), "
          f"field {args.field}{' (where defined)' if args.defined_only else ''}, "
          f"cameras {args.cameras}, batch {args.batch_size}, "
          f"{sum(p.numel() for p in model.parameters())} parameters; val majority "
          f"{majority:.3f}", flush=True)
    t0 = time.monotonic()
    for step in range(1, args.steps + 1):
        *inputs, target = load_batch(train, rng.choice(train_pool, args.batch_size,
                                                       replace=False), cameras, field)
        loss = nn.functional.binary_cross_entropy_with_logits(model(*inputs), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                pred = torch.cat([model(*b[:-1]) > 0 for b in val_batches]).float()
            model.train()
            print(f"step {step}: val accuracy {float((pred == truth).float().mean()):.3f} "
                  f"(majority {majority:.3f}), {time.monotonic() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
