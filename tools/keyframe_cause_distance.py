"""How far ahead the cited causes are at the CoC keyframes, per longitudinal decision.

For each keyframe of a split, the distance (m, ego frame) to the nearest cause of its
label that has a position, grouped by the label's longitudinal decision; and what that
distance is in pixels for a 1.7 m tall pedestrian and a 1 m traffic-light housing in
each camera of the samples (pinhole: focal length x size / distance). docs/RESULTS.md
("Against the targets") quotes it:

    PYTHONPATH=. .venv/bin/python tools/keyframe_cause_distance.py \
        --data artifacts/datasets/default --split test
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from alpamayo_ros.eval.commands import open_dataset, select_samples

PEDESTRIAN_HEIGHT_M = 1.7
LIGHT_HOUSING_HEIGHT_M = 1.0


def main() -> None:
    """Print the cause distances per decision and their size in pixels per camera."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="artifacts/datasets/default")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    data, _ = open_dataset(args.data, args.split)
    indices, _ = select_samples(data, True, None, None, 0)
    distances: dict[str, list[float]] = defaultdict(list)
    focal_px: dict[str, float] = {}
    for i in indices:
        sample = data[i]
        if sample.coc is None:
            continue
        stored_width = sample.images.shape[-2]
        for cam in sample.cameras:  # intrinsics are for the rig size; scale to the stored one
            focal_px[cam.name] = float(cam.intrinsics[0, 0]) * stored_width / cam.width_px
        placed = [c.position_m for c in sample.coc.components if np.isfinite(c.position_m[0])]
        if placed:
            distances[sample.coc.longitudinal_decision].append(
                min(float(np.hypot(p[0], p[1])) for p in placed))
    print("focal length at the stored image width (px): "
          + ", ".join(f"{k} {v:.0f}" for k, v in focal_px.items()))
    for decision, values in sorted(distances.items()):
        d = np.asarray(values)
        median = float(np.median(d))
        sizes = ", ".join(f"{k} {f * PEDESTRIAN_HEIGHT_M / median:.1f} / "
                          f"{f * LIGHT_HOUSING_HEIGHT_M / median:.1f}"
                          for k, f in focal_px.items())
        print(f"{decision or 'none'}: {len(d)} keyframes with a placed cause, median "
              f"{median:.0f} m (range {d.min():.0f}-{d.max():.0f}); at the median, "
              f"pedestrian / light housing px: {sizes}")


if __name__ == "__main__":
    main()
