"""A picture a person can check, as one PNG (cv2 only).

All cameras, the plan projected into the front cameras, a bird's-eye view and the
reasoning text. :func:`plan_overlay` (an ego-frame plan drawn into a camera image) is
shared with the demo's HTML report (:mod:`alpamayo_ros.eval.report`).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import cv2
import numpy as np

from alpamayo_ros.data.cameras import CameraConfig, RigConfig
from alpamayo_ros.data.coc import Keyframe, ego_future
from alpamayo_ros.data.render import SceneRenderer
from alpamayo_ros.data.scenarios import Episode
from alpamayo_ros.data.world import box_corners


def project_ego_points(cam: CameraConfig, xyz_ego: np.ndarray) -> np.ndarray:
    """Pixel coordinates (N, 2) of ego-frame points; NaN for points behind the camera."""
    g = cam.geometry()
    rot, t = g.camera_to_ego[:3, :3], g.camera_to_ego[:3, 3]
    pc = (np.asarray(xyz_ego, float) - t) @ rot  # ego -> camera
    z = pc[:, 2]
    uv = (g.intrinsics @ pc.T).T
    with np.errstate(divide="ignore", invalid="ignore"):
        out = uv[:, :2] / uv[:, 2:3]
    out[z <= 0.2] = np.nan
    return out


PLAN_COLOUR = (40, 255, 40)


def plan_overlay(image: np.ndarray, plan_xy_ego: np.ndarray, camera: CameraConfig,
                 colour: tuple[int, int, int] = PLAN_COLOUR, thickness: int = 2,
                 connect: bool = True) -> np.ndarray:
    """A copy of ``image`` with the ego-frame plan drawn on the ground (z = 0).

    ``plan_xy_ego`` is (N, 2), x forward, y left (metres). Points behind the camera (or
    closer than 0.2 m in front of it) and non-finite points are dropped; the polyline
    breaks there (``connect=False``: a dot per point). ``image`` may be the camera's image
    at any resolution: pixel coordinates are scaled from the camera's ``width_px`` x
    ``height_px`` to the image's size.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an RGB uint8 (H, W, 3) array, got {image.dtype} "
                         f"{image.shape}")
    plan = np.asarray(plan_xy_ego, dtype=np.float64)
    if plan.ndim != 2 or plan.shape[1] != 2:
        raise ValueError(f"plan_xy_ego must have shape (N, 2), got {plan.shape}")
    out = image.copy()
    uv = project_ego_points(camera, np.column_stack([plan, np.zeros(len(plan))]))
    uv *= (image.shape[1] / camera.width_px, image.shape[0] / camera.height_px)
    # Keep points within a generous band around the image so int32 never overflows.
    ok = np.all(np.isfinite(uv), axis=1)
    ok &= np.all(np.abs(uv) < 1e5, axis=1)
    runs, start = [], None
    for k, good in enumerate(list(ok) + [False]):
        if good and start is None:
            start = k
        elif not good and start is not None:
            runs.append(uv[start:k])
            start = None
    for run in runs:
        pts = np.round(run).astype(np.int32)
        if connect and len(pts) > 1:
            cv2.polylines(out, [pts], False, colour, thickness, cv2.LINE_AA)
        else:
            for u, v in pts:
                cv2.circle(out, (int(u), int(v)), thickness, colour, -1, cv2.LINE_AA)
    return out


def _bev(episode: Episode, index: int, plan_xy: np.ndarray, size: int = 280,
         metres: float = 110.0) -> np.ndarray:
    img = np.full((size, size, 3), 60, np.uint8)
    f = episode.frames[index]
    ox, oy, oh = f.ego.x, f.ego.y, f.ego.heading
    scale = size / metres
    c, s = math.cos(oh), math.sin(oh)

    def px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dx, dy = x - ox, y - oy
        ex, ey = c * dx + s * dy, -s * dx + c * dy  # ego frame
        return np.stack([size / 2 - ey * scale, size * 0.8 - ex * scale], axis=-1)

    road = episode.world.road
    cfg = road.config
    ss = np.arange(max(0.0, f.ego.s - 60), min(road.length_m, f.ego.s + 80), 1.0)
    for d, colour in (((-0.5) * cfg.lane_width_m, (230, 230, 230)),
                      ((cfg.num_lanes + cfg.oncoming_lanes - 0.5) * cfg.lane_width_m,
                       (230, 230, 230))):
        x, y, _ = road.to_world(ss, np.full_like(ss, d))
        cv2.polylines(img, [px(x, y).astype(np.int32)], False, colour, 1, cv2.LINE_AA)
    for lane in range(cfg.num_lanes + cfg.oncoming_lanes - 1):
        x, y, _ = road.to_world(ss, np.full_like(ss, (lane + 0.5) * cfg.lane_width_m))
        pts = px(x, y).astype(np.int32)
        for k in range(0, len(pts) - 3, 8):
            cv2.line(img, tuple(pts[k]), tuple(pts[k + 3]), (170, 170, 170), 1)
    for tl in episode.world.lights:
        x, y, _ = road.to_world(tl.stop_line_s, (cfg.num_lanes - 0.5) * cfg.lane_width_m / 2)
        colour = {"red": (255, 50, 50), "yellow": (255, 210, 0), "green": (50, 230, 80)}[
            f.lights.get(tl.id, "red")]
        p = px(np.array(x), np.array(y)).astype(int)
        cv2.circle(img, (int(p[0]), int(p[1])), 4, colour, -1)
    cited = {c.id for c in f.decision.long_causes + f.decision.lat_causes}
    plan = np.stack([size / 2 - plan_xy[:, 1] * scale, size * 0.8 - plan_xy[:, 0] * scale], 1)
    cv2.polylines(img, [plan.astype(np.int32)], False, (60, 255, 60), 2, cv2.LINE_AA)
    for a in f.agents:
        box = px(*box_corners(a.x, a.y, a.heading, a.length_m, a.width_m).T)
        colour = (255, 170, 0) if a.id in cited else (120, 170, 255)
        cv2.fillConvexPoly(img, box.astype(np.int32), colour)
    ego = px(*box_corners(ox, oy, oh, f.ego.length_m, f.ego.width_m).T)
    cv2.fillConvexPoly(img, ego.astype(np.int32), (240, 240, 240))
    cv2.putText(img, "BEV (orange: cited)", (5, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (255, 255, 255), 1, cv2.LINE_AA)
    return img


def mosaic(episode: Episode, keyframe: Keyframe, rig: RigConfig,
           renderer: SceneRenderer | None = None, tile_width: int = 448) -> np.ndarray:
    """RGB mosaic of one keyframe: cameras (front with the plan), BEV and reasoning."""
    renderer = renderer or SceneRenderer(episode)
    i = keyframe.index
    images = renderer.render(i, rig.cameras)
    plan = ego_future(episode, i)
    tiles = []
    for cam, img in zip(rig.cameras, images):
        img = img.copy()
        if cam.yaw_deg == 0.0 and cam.name.startswith("front"):
            img = plan_overlay(img, plan[:, :2], cam)
        h = int(round(img.shape[0] * tile_width / img.shape[1]))
        img = cv2.resize(img, (tile_width, h), interpolation=cv2.INTER_AREA)
        cv2.putText(img, cam.name, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
        tiles.append(img)
    th = tiles[0].shape[0]
    bev = cv2.resize(_bev(episode, i, plan[:, :2]), (th, th))
    lab = keyframe.label
    text = [f"{episode.family} seed {episode.seed}  t={episode.frames[i].time_s:.1f}s",
            f"longitudinal: {lab.longitudinal_decision or '-'} ({lab.longitudinal_meta_action})",
            f"lateral: {lab.lateral_decision or '-'} ({lab.lateral_meta_action})",
            "components: " + ", ".join(f"{c.id}[{c.type}]" for c in lab.components), ""]
    cols = 4
    panel_w = tile_width * cols - th
    text += textwrap.wrap(lab.text, width=panel_w // 8)
    panel = np.full((th, panel_w, 3), 25, np.uint8)
    for k, line in enumerate(text[: th // 16]):
        cv2.putText(panel, line, (8, 18 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (235, 235, 235), 1, cv2.LINE_AA)
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[r:r + cols]) for r in range(0, len(tiles), cols)]
    info = np.hstack([bev, panel])
    return np.vstack(rows + [info])


def save_png(rgb: np.ndarray, path: str | Path, max_bytes: int = 400_000) -> Path:
    """Write an RGB image as PNG, halving its size until it fits ``max_bytes``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    while True:
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise RuntimeError("png encoding failed")
        if len(buf) <= max_bytes or img.shape[1] < 200:
            path.write_bytes(buf.tobytes())
            return path
        img = cv2.resize(img, (img.shape[1] * 3 // 4, img.shape[0] * 3 // 4),
                         interpolation=cv2.INTER_AREA)
