"""Data-engine commands: generate (bags), cache, mosaic, label-report and render-bench.

``alpamayo generate`` writes MCAP bags, ``alpamayo cache`` npy training shards,
``alpamayo mosaic`` a PNG to check, ``alpamayo label-report`` the CoC-action consistency
of the expert's labels (and the unicycle-fit error of its plans), ``alpamayo
render-bench`` images per second (JSON).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the data-engine subcommands."""
    from alpamayo_ros.data.cameras import RIG_PRESETS
    from alpamayo_ros.data.scenarios import FAMILIES

    p = subparsers.add_parser("generate", help="simulate scenario families and write MCAP bags")
    p.add_argument("--out", required=True, help="output directory (one bag per episode)")
    p.add_argument("--families", default="all",
                   help=f"comma-separated families or 'all' ({', '.join(sorted(FAMILIES))})")
    p.add_argument("--episodes-per-family", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--duration-s", type=float, default=None, help="clip length (default 20 s)")
    p.add_argument("--rig", default="ar1", choices=sorted(RIG_PRESETS))
    p.add_argument("--raw", action="store_true", help="sensor_msgs/Image instead of jpeg")
    p.add_argument("--cache", default="", help="also write an npy training cache here")
    _cache_options(p)
    p.set_defaults(func=_generate)

    c = subparsers.add_parser("cache", help="build the npy training cache from bags")
    c.add_argument("bags", nargs="+")
    c.add_argument("--out", required=True)
    _cache_options(c)
    c.set_defaults(func=_cache)

    m = subparsers.add_parser("mosaic", help="PNG of all cameras, plan, BEV and reasoning")
    m.add_argument("--family", default="lead_at_red_light", choices=sorted(FAMILIES))
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--keyframe", type=int, default=-1, help="which keyframe (default last)")
    m.add_argument("--rig", default="ar1", choices=sorted(RIG_PRESETS))
    m.add_argument("--out", default="docs/mosaic.png")
    m.set_defaults(func=_mosaic)

    r = subparsers.add_parser(
        "label-report",
        help="CoC-action consistency of the expert's labels, decisions per family and "
             "unicycle-fit error of its plans (JSON)")
    r.add_argument("--families", default="all")
    r.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 of each family")
    r.add_argument("--fit", action="store_true",
                   help="also fit controls to every plan of every episode (slower)")
    r.set_defaults(func=_label_report)

    b = subparsers.add_parser("render-bench", help="images per second of the renderer (JSON)")
    b.add_argument("--rig", default="ar1", choices=sorted(RIG_PRESETS))
    b.add_argument("--frames", type=int, default=30)
    b.add_argument("--family", default="lead_at_red_light", choices=sorted(FAMILIES))
    b.set_defaults(func=_bench)


def _cache_options(p: argparse.ArgumentParser) -> None:
    from alpamayo_ros.data.dataset import DEFAULT_HISTORY_FRAMES

    p.add_argument("--history-frames", type=int, default=DEFAULT_HISTORY_FRAMES,
                   help="camera frames per cached sample (the tiny and default presets "
                        f"read {DEFAULT_HISTORY_FRAMES})")
    p.add_argument("--stride", type=int, default=0,
                   help="besides the keyframes, cache a sample every N steps (1: all steps)")


def _families(spec: str) -> list[str]:
    from alpamayo_ros.data.scenarios import FAMILIES

    names = sorted(FAMILIES) if spec == "all" else [s.strip() for s in spec.split(",") if s]
    bad = [n for n in names if n not in FAMILIES]
    if bad:
        raise SystemExit(f"unknown families {bad}; choose from {sorted(FAMILIES)}")
    return names


def _generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from alpamayo_ros.data.bag import BagConfig, write_episode_bag
    from alpamayo_ros.data.cameras import make_rig
    from alpamayo_ros.data.coc import LabelStats, label_episode
    from alpamayo_ros.data.scenarios import make_scenario, simulate

    if args.episodes_per_family < 1:
        raise SystemExit("--episodes-per-family must be >= 1")
    if args.history_frames < 1 or args.stride < 0:
        raise SystemExit("--history-frames must be >= 1 and --stride >= 0")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rig = make_rig(args.rig)
    jobs = [(f, args.seed + k) for f in _families(args.families)
            for k in range(args.episodes_per_family)]
    stats = LabelStats()
    written = []
    bar = tqdm(total=0, unit="frame", desc="generate")
    for family, seed in jobs:
        episode = simulate(make_scenario(family, seed, args.duration_s))
        keyframes = label_episode(episode, stats=stats)
        bar.total += len(episode.frames)
        bar.set_postfix_str(f"{family}/{seed}")
        path = write_episode_bag(episode, keyframes, rig, out / f"{family}_{seed:05d}",
                                 BagConfig(compressed=not args.raw), progress=bar.update)
        written.append(str(path))
    bar.close()
    summary = {"bags": written, "keyframes": stats.keyframes,
               "dropped_unobservable": stats.dropped_unobservable}
    if args.cache:
        from alpamayo_ros.data.dataset import BagDataset, write_cache

        ds = BagDataset(written, history_frames=args.history_frames, stride=args.stride)
        write_cache(ds, args.cache)
        summary["cache"] = args.cache
        summary["cached_samples"] = len(ds)
    print(json.dumps(summary, indent=1))
    return 0


def _cache(args: argparse.Namespace) -> int:
    from alpamayo_ros.data.dataset import BagDataset, write_cache

    if args.history_frames < 1 or args.stride < 0:
        raise SystemExit("--history-frames must be >= 1 and --stride >= 0")
    ds = BagDataset(args.bags, history_frames=args.history_frames, stride=args.stride)
    write_cache(ds, args.out)
    print(json.dumps({"samples": len(ds), "cache": args.out}))
    return 0


def _mosaic(args: argparse.Namespace) -> int:
    from alpamayo_ros.data.cameras import make_rig
    from alpamayo_ros.data.coc import label_episode
    from alpamayo_ros.data.mosaic import mosaic, save_png
    from alpamayo_ros.data.scenarios import make_scenario, simulate

    episode = simulate(make_scenario(args.family, args.seed))
    keyframes = label_episode(episode)
    if not keyframes:
        raise SystemExit("episode has no keyframes")
    path = save_png(mosaic(episode, keyframes[args.keyframe], make_rig(args.rig)), args.out)
    print(json.dumps({"png": str(path), "bytes": path.stat().st_size}))
    return 0


def _label_report(args: argparse.Namespace) -> int:
    import numpy as np

    from alpamayo_ros.data.coc import ego_future, label_episode
    from alpamayo_ros.data.consistency import consistency_score
    from alpamayo_ros.data.controls import episode_plan_controls
    from alpamayo_ros.data.scenarios import (
        FAMILY_DECISIONS,
        cause_matches,
        make_scenario,
        simulate,
    )

    if args.seeds < 1:
        raise SystemExit("--seeds must be >= 1")
    families, scores, fit_errors = {}, [], []
    t0 = time.perf_counter()
    for family in _families(args.families):
        fam_scores, missing = [], []
        for seed in range(args.seeds):
            episode = simulate(make_scenario(family, seed))
            keyframes = label_episode(episode)
            for k in keyframes:
                fam_scores.append(consistency_score(k.label, ego_future(episode, k.index),
                                                    episode.frames[k.index].ego.v_mps))
            for channel, decision, cause in FAMILY_DECISIONS[family]:
                found = any(cause_matches(cause, k.label.components) for k in keyframes
                            if (k.label.longitudinal_decision if channel == "lon"
                                else k.label.lateral_decision) == decision)
                if not found:
                    missing.append(f"seed {seed}: {decision} <- {cause}")
            if args.fit:
                fit_errors.append(episode_plan_controls(episode)[1].max_position_error_m)
        families[family] = {"keyframes": len(fam_scores),
                            "consistency_mean": round(float(np.mean(fam_scores)), 4),
                            "consistency_min": float(np.min(fam_scores)),
                            "missing_decisions": missing}
        scores += fam_scores
    report = {"seeds": args.seeds, "keyframes": len(scores),
              "consistency_mean": round(float(np.mean(scores)), 4),
              "consistency_min": float(np.min(scores)),
              "keyframes_below_1": int(np.sum(np.asarray(scores) < 1.0)),
              "families": families}
    if args.fit:
        err = np.concatenate(fit_errors)
        report["plan_fit"] = {"plans": int(err.size),
                              "max_position_error_m": round(float(err.max()), 4),
                              "mean_max_position_error_m": round(float(err.mean()), 4),
                              "p99_max_position_error_m": round(float(np.percentile(err, 99)), 4)}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=1))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from alpamayo_ros.data.cameras import make_rig
    from alpamayo_ros.data.render import SceneRenderer
    from alpamayo_ros.data.scenarios import make_scenario, simulate

    episode = simulate(make_scenario(args.family, 0))
    rig = make_rig(args.rig)
    renderer = SceneRenderer(episode)
    frames = min(args.frames, len(episode.frames))
    renderer.render(0, rig.cameras)  # warm-up
    t0 = time.perf_counter()
    for i in range(frames):
        renderer.render(i * len(episode.frames) // frames, rig.cameras)
    dt = time.perf_counter() - t0
    cam = rig.cameras[0]
    print(json.dumps({"rig": args.rig, "cameras": len(rig.cameras),
                      "resolution": f"{cam.width_px}x{cam.height_px}", "frames": frames,
                      "images_per_s": round(frames * len(rig.cameras) / dt, 1),
                      "frame_sets_per_s": round(frames / dt, 2), "processes": 1}))
    return 0
