"""``alpamayo bench decode``: flow-matching expert vs autoregressive trajectory tokens.

Side by side in one run, on the same weights and the same backbone context (prefill +
reasoning), the benchmark times the trajectory stage three ways, interleaved round by
round so machine noise hits them alike:

- the flow-matching expert with ``--flow-steps`` Euler steps (default 10) and with 5;
- autoregressive decoding of ``<traj>`` + the 128 trajectory tokens with the backbone's
  KV cache (greedy, each token restricted to its acceleration/curvature bins).

It prints one JSON object: medians, p90s and minima in ms, the speed-up ratios (AR / flow:
of the medians, and of the minima), how it was measured (warmup, repeats, device,
threads, torch version, the machine's load average around the timed rounds) and the
difference between the 5- and 10-step trajectories from the same noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``alpamayo bench decode``."""
    parser.add_argument("--preset", default="default", help="model preset (default: default)")
    parser.add_argument("--weights", default="", help="weights directory (else random init)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--flow-steps", type=int, default=10)
    parser.add_argument("--cameras", type=int, default=0, help="0: the preset's max_cameras")
    parser.add_argument("--reasoning-tokens", type=int, default=0,
                        help="reasoning tokens in the context (0: the preset's budget)")
    parser.add_argument("--seed", type=int, default=0)


def _stats(ms: list[float]) -> dict:
    ordered = sorted(ms)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {"median_ms": round(statistics.median(ordered), 3), "p90_ms": round(p90, 3),
            "min_ms": round(ordered[0], 3)}


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark and return the result dict."""
    import torch

    from alpamayo_ros.model import dynamics
    from alpamayo_ros.model.policy import Policy
    from alpamayo_ros.model.synthetic import synthetic_sample

    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        raise ValueError("--repeats and --threads must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    if args.weights:
        policy = Policy.from_pretrained(args.weights, device=args.device)
        source = args.weights
    else:
        policy = Policy.from_config(args.preset, seed=args.seed, device=args.device)
        source = f"random init (preset {args.preset}, seed {args.seed})"
    model, cfg, dev = policy.model, policy.config, policy.device
    cams = args.cameras or cfg.vision.max_cameras
    rng = np.random.default_rng(args.seed)
    sample = synthetic_sample(rng, num_cameras=cams, num_frames=cfg.vision.num_frames,
                              height_px=cfg.vision.image_height_px,
                              width_px=cfg.vision.image_width_px)
    budget = args.reasoning_tokens or cfg.tokenizer.max_reasoning_tokens

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    with torch.inference_mode():
        batch = policy.processor([sample], with_targets=False).to(dev)
        ctx = model.prefill(batch)
        # A reasoning of exactly `budget` text tokens (the untrained model's own text is
        # arbitrary; its length is what the trajectory stage sees).
        allowed = torch.zeros(ctx.logits.shape[-1], dtype=torch.bool, device=dev)
        allowed[: model.ids.pad] = True
        for _ in range(budget):
            ctx = model.step(ctx, model._pick(ctx.logits, allowed, 0.0, None))
        ctx = model.step(ctx, torch.full((1,), model.ids.coc_end, device=dev))
        noise = torch.randn(1, cfg.num_waypoints, 2,
                            generator=torch.Generator().manual_seed(args.seed)).to(dev)

        def flow(steps: int) -> torch.Tensor:
            return model.flow_trajectory(ctx, steps, noise=noise)

        def tokens() -> torch.Tensor:
            return model.decode_trajectory_tokens(ctx, restore=True)[0]

        cases = {"flow": lambda: flow(args.flow_steps), "flow_5_steps": lambda: flow(5),
                 "autoregressive_tokens": tokens}
        times: dict[str, list[float]] = {name: [] for name in cases}
        load_before = _load_average()
        for i in range(args.warmup + args.repeats):
            for name, fn in cases.items():
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                if i >= args.warmup:
                    times[name].append((time.perf_counter() - t0) * 1e3)
        load_after = _load_average()
        c_main, c_5 = flow(args.flow_steps)[0, 0], flow(5)[0, 0]
        v0 = batch.speed_mps.double()
        s_main = dynamics.integrate(c_main[None, :, 0].double(), c_main[None, :, 1].double(), v0)
        s_5 = dynamics.integrate(c_5[None, :, 0].double(), c_5[None, :, 1].double(), v0)
        dist = torch.linalg.norm(s_main[0, :, :2] - s_5[0, :, :2], dim=-1)
    stats = {name: _stats(ms) for name, ms in times.items()}
    ar = stats["autoregressive_tokens"]["median_ms"]
    return {
        "benchmark": "decode",
        "what": "trajectory stage after a shared prefill+reasoning context: flow-matching "
                "expert (Euler) vs autoregressive decoding of <traj> + 128 trajectory tokens",
        "weights": source,
        "preset": cfg.preset,
        "parameters": policy.num_parameters(),
        "context_tokens": ctx.length,
        "reasoning_tokens": budget,
        "cameras": cams,
        "vision_tokens_per_timestep": cfg.vision.tokens_per_timestep,
        "flow_steps": args.flow_steps,
        "timings": stats,
        "ratio_autoregressive_over_flow": round(ar / stats["flow"]["median_ms"], 2),
        "ratio_autoregressive_over_flow_5_steps":
            round(ar / stats["flow_5_steps"]["median_ms"], 2),
        # The least-disturbed rounds of each case (other jobs on a shared machine hit a
        # 300 ms AR round and a 10 ms flow round unevenly); the headline is the median.
        "ratio_of_minimums": {
            "flow": round(stats["autoregressive_tokens"]["min_ms"] / stats["flow"]["min_ms"], 2),
            "flow_5_steps": round(stats["autoregressive_tokens"]["min_ms"]
                                  / stats["flow_5_steps"]["min_ms"], 2),
        },
        "ar1_reported_ratio": 25.0,
        "steps_5_vs_main_difference": {
            "max_abs_acceleration_mps2": round(float((c_main[:, 0] - c_5[:, 0]).abs().max()), 5),
            "max_abs_curvature_per_m": round(float((c_main[:, 1] - c_5[:, 1]).abs().max()), 6),
            "mean_position_m": round(float(dist.mean()), 4),
            "final_position_m": round(float(dist[-1]), 4),
        },
        "measured": {
            "warmup": args.warmup, "repeats": args.repeats, "statistic": "median and p90",
            "interleaved": True, "device": str(dev),
            "device_name": (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                            else _cpu_name()),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "batch_size": 1, "dtype": "float32",
            "cpu_count": os.cpu_count(),
            # Other jobs on a shared machine slow the 2-thread runs unevenly: the 1-minute
            # load average before and after the timed rounds says how busy it was.
            "load_average_1min": [load_before, load_after],
            "ratio_statistic": "median AR time / median flow time",
        },
    }


def bench(args: argparse.Namespace) -> int:
    """Entry point of ``alpamayo bench decode``: prints the JSON result."""
    print(json.dumps(run(args), indent=2))
    return 0
