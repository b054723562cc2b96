"""The demo's self-contained HTML report: camera mosaics with the plan, a BEV, the reasoning.

``alpamayo demo`` records what the ROS graph publishes (plans, reasoning, safety state,
camera images, the ego and the agents) into :class:`ReportScenario` objects and calls
:func:`write_report`, which writes one HTML file with everything embedded (images as
base64 JPEG/PNG, CSS inline, no script, no external reference). Per scenario:

- the metrics row (collision, close encounter, off-road, progress, comfort, safety
  interventions, PDMS; :func:`alpamayo_ros.eval.closed_loop.scenario_metrics`);
- a strip of camera mosaics over time (:func:`frame_mosaic`): the plan camera
  (``front_wide``) large with the plan made on those images drawn on the ground
  (:func:`plan_overlay`), the other cameras around it;
- a bird's-eye view (:func:`bev_figure`, matplotlib Agg): the road's lanes, stop lines,
  crosswalks and lights, the ego track coloured by time, a few plans and the ego and
  agent boxes at a few times;
- the reasoning at each plan (time, decisions, accepted or failed checks, the
  controller's safety state, the text).

At the top: the summary (markdown, e.g. a table, or rows of dicts) and the notes.
:func:`write_preview_png` writes one mosaic above the BEV as a PNG (the README picture).
Pure core: no rclpy, no message packages.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from alpamayo_ros.data.cameras import CameraConfig, RigConfig
from alpamayo_ros.data.mosaic import plan_overlay, save_png
from alpamayo_ros.data.world import World, box_corners

__all__ = ["ReportFrame", "ReportPlan", "ReportScenario", "bev_figure", "camera_by_name",
           "frame_mosaic", "markdown_to_html", "plan_overlay", "plan_to_map", "scenario_bev",
           "write_preview_png", "write_report"]

PLAN_CAMERA = "front_wide"  # the camera the plan is drawn into
SAFETY_STATES = ("OK", "DEGRADED", "FALLBACK", "")
MAX_BEV_PLANS = 6  # plans drawn in the BEV
MAX_BEV_SNAPSHOTS = 5  # times at which the ego and agent boxes are drawn
FRAME_PLAN_MATCH_S = 1.0  # a frame's caption shows the plan within this time of it


# --------------------------------------------------------------------------- records
def _xy(value: Any, name: str, rows: int | None = None) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or (rows is not None and arr.shape[0] != rows):
        want = f"({rows}, 2)" if rows is not None else "(N, 2)"
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    return arr


@dataclass
class ReportPlan:
    """One policy plan as the controller saw it.

    - ``t_s``: scenario time of the plan's camera stamp;
    - ``plan_xy_ego``: (N, 2) waypoints in the ego frame at ``t_s`` (x forward, y left; the
      policy's 64); ``plan_xy_map``: the same in the map frame;
    - ``reasoning``: the generated Chain-of-Causality text ("" without reasoning);
    - ``decisions``: parsed (longitudinal, lateral), "" when unparsed;
    - ``accepted`` / ``failed_checks``: the safety monitor's verdict;
    - ``safety_state``: OK / DEGRADED / FALLBACK of the controller after it; "" or "-"
      when unknown (stored as "").
    """

    t_s: float
    plan_xy_ego: np.ndarray
    plan_xy_map: np.ndarray
    reasoning: str = ""
    decisions: tuple[str, str] = ("", "")
    accepted: bool = True
    failed_checks: tuple[str, ...] = ()
    safety_state: str = ""

    def __post_init__(self) -> None:
        if not math.isfinite(self.t_s):
            raise ValueError(f"t_s must be finite, got {self.t_s}")
        self.plan_xy_ego = _xy(self.plan_xy_ego, "plan_xy_ego")
        self.plan_xy_map = _xy(self.plan_xy_map, "plan_xy_map", len(self.plan_xy_ego))
        if len(self.decisions) != 2:
            raise ValueError(f"decisions must be (longitudinal, lateral), got {self.decisions}")
        self.decisions = (str(self.decisions[0] or ""), str(self.decisions[1] or ""))
        self.failed_checks = tuple(str(c) for c in self.failed_checks)
        self.reasoning = str(self.reasoning or "")
        if self.safety_state in ("-", "–"):
            self.safety_state = ""
        if self.safety_state not in SAFETY_STATES:
            raise ValueError(f"safety_state must be one of {SAFETY_STATES}, got "
                             f"{self.safety_state!r}")


@dataclass
class ReportFrame:
    """Camera images at one plan: name -> RGB uint8 (H, W, 3), and that plan (ego frame)."""

    t_s: float
    images: dict[str, np.ndarray]
    plan_xy_ego: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.t_s):
            raise ValueError(f"t_s must be finite, got {self.t_s}")
        if not self.images:
            raise ValueError("images must not be empty")
        for name, img in self.images.items():
            a = np.asarray(img)
            if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
                raise ValueError(f"images[{name!r}] must be RGB uint8 (H, W, 3), got "
                                 f"{a.dtype} {a.shape}")
        if self.plan_xy_ego is not None:
            self.plan_xy_ego = _xy(self.plan_xy_ego, "plan_xy_ego")


@dataclass
class ReportScenario:
    """One scenario of the demo, as received from the graph.

    - ``metrics``: :func:`alpamayo_ros.eval.closed_loop.scenario_metrics` output;
    - ``ego_track``: (T, 5) t_s, x, y, heading, speed in the map frame (10 Hz);
    - ``agents_track``: (t_s, (N, 7) x, y, yaw, length, width, vx, vy, ids) samples;
    - ``world``: ``make_scenario(family, seed).world`` (the road for the BEV);
    - ``rig``: the simulator's camera rig (``make_rig("ar1")``).
    """

    family: str
    seed: int
    title: str
    metrics: dict
    ego_track: np.ndarray
    agents_track: list[tuple[float, np.ndarray, tuple[str, ...]]]
    plans: list[ReportPlan]
    frames: list[ReportFrame]
    world: World
    rig: RigConfig
    ego_size_m: tuple[float, float] | None = None  # length, width; None: the world's ego
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        track = np.asarray(self.ego_track, dtype=np.float64)
        if track.ndim != 2 or track.shape[1] != 5 or len(track) == 0:
            raise ValueError(f"ego_track must have shape (T, 5) with T >= 1, got {track.shape}")
        if not np.all(np.isfinite(track)):
            raise ValueError("ego_track must be finite")
        self.ego_track = track
        for k, entry in enumerate(self.agents_track):
            if len(entry) != 3:
                raise ValueError(f"agents_track[{k}] must be (t_s, (N, 7) array, ids)")
            arr = np.asarray(entry[1], dtype=np.float64)
            if arr.size == 0:
                arr = arr.reshape(0, 7)
            if arr.ndim != 2 or arr.shape[1] != 7 or len(entry[2]) != len(arr):
                raise ValueError(f"agents_track[{k}] must hold an (N, 7) array and N ids, "
                                 f"got {arr.shape} and {len(entry[2])} ids")
        if not isinstance(self.world, World):
            raise ValueError(f"world must be an alpamayo_ros.data.world.World, got "
                             f"{type(self.world).__name__}")
        if not isinstance(self.rig, RigConfig):
            raise ValueError(f"rig must be an alpamayo_ros.data.cameras.RigConfig, got "
                             f"{type(self.rig).__name__}")
        if self.ego_size_m is None:
            self.ego_size_m = (self.world.ego.length_m, self.world.ego.width_m)


def plan_to_map(plan_xy_ego: np.ndarray, x_m: float, y_m: float,
                heading_rad: float) -> np.ndarray:
    """Ego-frame points (N, 2) in the map frame, given the ego pose at the plan's stamp."""
    xy = _xy(plan_xy_ego, "plan_xy_ego")
    c, s = math.cos(heading_rad), math.sin(heading_rad)
    return np.column_stack([x_m + c * xy[:, 0] - s * xy[:, 1],
                            y_m + s * xy[:, 0] + c * xy[:, 1]])


# --------------------------------------------------------------------------- images
def _label(img: np.ndarray, text: str) -> None:
    scale = max(0.35, img.shape[1] / 700)
    cv2.putText(img, text, (6, int(16 * scale / 0.45)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (6, int(16 * scale / 0.45)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), 1, cv2.LINE_AA)


def _fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA
                      if img.shape[1] > width else cv2.INTER_LINEAR)


def frame_mosaic(frame: ReportFrame, rig: RigConfig, tile_width: int = 288,
                 plan_camera: str = PLAN_CAMERA) -> np.ndarray:
    """RGB mosaic of one frame: the plan camera large (with the plan), the rest beside it.

    The plan camera's tile is twice ``tile_width``; the other cameras fill two rows beside
    it, each labelled. Cameras of the rig missing from the frame are left out; images of
    other sizes than the rig's are scaled.
    """
    if tile_width < 32:
        raise ValueError(f"tile_width must be >= 32, got {tile_width}")
    cams = [c for c in rig.cameras if c.name in frame.images]
    if not cams:
        raise ValueError(f"frame has none of the rig's cameras {[c.name for c in rig.cameras]}"
                         f", got {sorted(frame.images)}")
    big = next((c for c in cams if c.name == plan_camera), cams[0])
    aspect = big.height_px / big.width_px
    th = max(8, int(round(tile_width * aspect)))
    main = np.asarray(frame.images[big.name])
    if frame.plan_xy_ego is not None:
        thick = max(2, int(round(main.shape[1] / 220)))
        main = plan_overlay(main, frame.plan_xy_ego, big, thickness=thick)
        # A dot each second (every 10th waypoint at 10 Hz) shows the planned speed.
        main = plan_overlay(main, frame.plan_xy_ego[9::10], big, colour=(255, 60, 200),
                            thickness=thick + 1, connect=False)
    main = _fit(main, 2 * tile_width, 2 * th)
    _label(main, big.name + (" + plan" if frame.plan_xy_ego is not None else ""))
    others = [c for c in cams if c is not big]
    if not others:
        return main
    cols = math.ceil(len(others) / 2)
    grid = np.zeros((2 * th, cols * tile_width, 3), np.uint8)
    for k, cam in enumerate(others):
        tile = _fit(np.asarray(frame.images[cam.name]), tile_width, th)
        _label(tile, cam.name)
        r, c = divmod(k, cols)
        grid[r * th:(r + 1) * th, c * tile_width:(c + 1) * tile_width] = tile
    return np.hstack([main, grid])


def _encode(rgb: np.ndarray, fmt: str, jpeg_quality: int = 80) -> str:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    else:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError(f"{fmt} encoding failed")
    return f"data:image/{fmt};base64," + base64.b64encode(buf.tobytes()).decode("ascii")


# --------------------------------------------------------------------------- BEV
def _road_s_range(world: World, xy: np.ndarray, margin_m: float) -> tuple[float, float]:
    road = world.road
    pts = xy[np.all(np.isfinite(xy), axis=1)]
    if not len(pts):
        return 0.0, road.length_m
    ref = np.column_stack([road.x, road.y])
    idx = [int(np.argmin(np.sum((ref - p) ** 2, axis=1))) for p in pts[:: max(1, len(pts) // 200)]]
    s = road.s[idx]
    return float(s.min() - margin_m), float(s.max() + margin_m)


def _draw_road(ax: Any, world: World, s_lo: float, s_hi: float) -> None:
    road, cfg = world.road, world.road.config
    w = cfg.lane_width_m
    right, left = -0.5 * w, (cfg.num_lanes + cfg.oncoming_lanes - 0.5) * w
    ss = np.arange(s_lo, s_hi + 0.5, 1.0)

    def line(d: float, lo: float = s_lo, hi: float = s_hi) -> tuple[np.ndarray, np.ndarray]:
        s = ss[(ss >= lo) & (ss <= hi)]
        x, y, _ = road.to_world(s, np.full_like(s, d))
        return x, y

    def band(d0: float, d1: float, lo: float, hi: float, **kw: Any) -> None:
        x0, y0 = line(d0, lo, hi)
        x1, y1 = line(d1, lo, hi)
        if len(x0) > 1:
            ax.fill(np.r_[x0, x1[::-1]], np.r_[y0, y1[::-1]], **kw)

    if cfg.shoulder_m > 0:
        band(right - cfg.shoulder_m, right, s_lo, s_hi, color="#a9a9a2", lw=0, zorder=0)
    band(right, left, s_lo, s_hi, color="#8c8c90", lw=0, zorder=0)
    for sp in world.lane_spans:
        band((sp.lane - 0.5) * w, (sp.lane + 0.5) * w, max(s_lo, sp.s_start),
             min(s_hi, sp.s_end), color="#8c8c90", lw=0, zorder=0)
        ax.plot(*line((sp.lane - 0.5) * w, sp.s_start, sp.s_end), color="white", lw=1.0,
                zorder=1)
    for inter in world.intersections:
        if s_lo - 60 <= inter.s <= s_hi + 60:
            x, y, h = road.to_world(inter.s, 0.5 * (left + right))
            c, s = math.cos(float(h)), math.sin(float(h))
            hw, hl = inter.width_m / 2, 40.0
            ax.fill([x + c * hw - s * hl, x - c * hw - s * hl, x - c * hw + s * hl,
                     x + c * hw + s * hl],
                    [y + s * hw + c * hl, y - s * hw + c * hl, y - s * hw - c * hl,
                     y + s * hw - c * hl], color="#8c8c90", lw=0, zorder=0)
    for d in (right, left):
        ax.plot(*line(d), color="white", lw=1.2, zorder=1)
    for lane in range(cfg.num_lanes + cfg.oncoming_lanes - 1):
        d = (lane + 0.5) * w
        if lane == cfg.num_lanes - 1 and cfg.oncoming_lanes:
            ax.plot(*line(d), color="#e6be28", lw=1.4, zorder=1)
        else:
            ax.plot(*line(d), color="white", lw=0.8, dashes=(4, 5), zorder=1)
    for cw in world.crosswalks:
        if s_lo <= cw.s <= s_hi:
            band(right, left, cw.s - cw.width_m / 2, cw.s + cw.width_m / 2, facecolor="none",
                 edgecolor="white", hatch="||||", lw=0.5, zorder=1)
    legend: list[str] = []
    stops = [(tl.stop_line_s, "light", tl) for tl in world.lights] + [
        (ss_.stop_line_s, "stop sign", ss_) for ss_ in world.stop_signs]
    for s, kind, obj in stops:
        if not s_lo <= s <= s_hi:
            continue
        x, y, _ = road.to_world(np.array([s, s]), np.array([right, (cfg.num_lanes - 0.5) * w]))
        ax.plot(x, y, color="white", lw=2.2, zorder=1)
        mx, my, _ = road.to_world(s, right - 1.5)
        if kind == "light":
            ax.plot(float(mx), float(my), "s", ms=6, mec="white", mfc="black", zorder=6)
            ax.annotate(obj.id, (float(mx), float(my)), xytext=(4, -10), color="white",
                        textcoords="offset points", fontsize=6.5, zorder=7)
            legend.append(f"{obj.id}: " + ", ".join(f"{c} from {t:.1f} s"
                                                    for t, c in obj.schedule))
        else:
            ax.plot(float(mx), float(my), "8", ms=8, mec="white", mfc="#c22", zorder=6)
            ax.annotate(f"{obj.id} (stop sign)", (float(mx), float(my)), xytext=(4, -10),
                        textcoords="offset points", fontsize=6.5, color="white", zorder=7)
    if legend:
        ax.text(0.01, 0.03, "\n".join(legend), transform=ax.transAxes, fontsize=7, zorder=8,
                va="bottom", bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})


def _nearest(times: np.ndarray, t: float) -> int:
    return int(np.argmin(np.abs(times - t)))


def bev_figure(world: World, ego_track: np.ndarray,
               plans: Sequence[ReportPlan] = (),
               agents_track: Sequence[tuple[float, np.ndarray, tuple[str, ...]]] = (),
               snapshot_times: Sequence[float] | None = None,
               ego_size_m: tuple[float, float] | None = None, title: str = "",
               width_px: int = 1100, dpi: int = 100) -> np.ndarray:
    """Bird's-eye view (map frame) as an RGB uint8 image, drawn with matplotlib (Agg).

    The road around the track (lanes, edges, stop lines, crosswalks, lights with their
    schedule), the ego track coloured by time, ``plans`` (map frame; accepted solid,
    rejected dashed) in the same colours, and the ego and agent boxes at
    ``snapshot_times`` (default: up to five times spread over the track).
    """
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Polygon

    track = np.asarray(ego_track, dtype=np.float64)
    if track.ndim != 2 or track.shape[1] != 5 or not len(track):
        raise ValueError(f"ego_track must have shape (T, 5) with T >= 1, got {track.shape}")
    times = track[:, 0]
    t0, t1 = float(times.min()), float(times.max())
    norm = Normalize(t0, max(t1, t0 + 1e-3))
    cmap = __import__("matplotlib").colormaps["viridis"]
    if snapshot_times is None:
        snapshot_times = np.linspace(t0, t1, min(MAX_BEV_SNAPSHOTS, len(track)))
    length, width = ego_size_m or (world.ego.length_m, world.ego.width_m)

    pts = [track[:, 1:3]] + [p.plan_xy_map for p in plans]
    allxy = np.vstack(pts)
    allxy = allxy[np.all(np.isfinite(allxy), axis=1)]
    lo, hi = allxy.min(axis=0) - 12.0, allxy.max(axis=0) + 12.0
    span = np.maximum(hi - lo, 1.0)
    width_in = width_px / dpi
    margins_in = (0.65, 0.1, 0.5, 0.35)  # left, right, bottom, top (labels, title)
    axes_w = width_in - margins_in[0] - margins_in[1]
    height_in = float(np.clip(axes_w * span[1] / span[0] + margins_in[2] + margins_in[3],
                              3.2, 9.0))
    # Widen the shorter side so the equal-aspect axes fill the figure.
    ratio = (height_in - margins_in[2] - margins_in[3]) / axes_w
    centre = 0.5 * (lo + hi)
    if span[1] / span[0] < ratio:
        span[1] = span[0] * ratio
    else:
        span[0] = span[1] / ratio
    lo, hi = centre - span / 2, centre + span / 2
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    fig.subplots_adjust(left=margins_in[0] / width_in, right=1 - margins_in[1] / width_in,
                        bottom=margins_in[2] / height_in, top=1 - margins_in[3] / height_in)
    ax.set_facecolor("#5b7052")
    s_lo, s_hi = _road_s_range(world, allxy, 40.0)
    _draw_road(ax, world, s_lo, s_hi)

    agent_times = np.array([float(a[0]) for a in agents_track])
    for t in snapshot_times:
        colour = cmap(norm(t))
        if len(agent_times):
            _, arr, ids = agents_track[_nearest(agent_times, float(t))]
            arr = np.asarray(arr, dtype=np.float64).reshape(-1, 7)
            for row, aid in zip(arr, ids):
                if not np.all(np.isfinite(row[:5])):
                    continue
                box = box_corners(row[0], row[1], row[2], row[3], row[4])
                ax.add_patch(Polygon(box, closed=True, facecolor=colour, edgecolor="#f08a24",
                                     lw=1.0, alpha=0.75, zorder=3))
                if t == snapshot_times[-1] and lo[0] <= row[0] <= hi[0] and \
                        lo[1] <= row[1] <= hi[1]:
                    ax.annotate(str(aid), (row[0], row[1]), xytext=(3, 3), fontsize=6.5,
                                textcoords="offset points", color="#fff3d6", zorder=7)
        k = _nearest(times, float(t))
        box = box_corners(track[k, 1], track[k, 2], track[k, 3], length, width)
        ax.add_patch(Polygon(box, closed=True, facecolor=colour, edgecolor="white", lw=1.6,
                             zorder=5))
        ax.annotate(f"{times[k]:.1f} s", (track[k, 1], track[k, 2]), xytext=(0, -14),
                    ha="center", textcoords="offset points", fontsize=7, color="white",
                    zorder=7)
    ax.scatter(track[:, 1], track[:, 2], c=times, cmap=cmap, norm=norm, s=5, zorder=6)
    outline = [patheffects.Stroke(linewidth=3.6, foreground="white"), patheffects.Normal()]
    for p in plans:
        xy = p.plan_xy_map
        ax.plot(xy[:, 0], xy[:, 1], color=cmap(norm(p.t_s)), lw=1.8 if p.accepted else 1.4,
                ls="-" if p.accepted else "--", zorder=6.5, path_effects=outline)
        ax.plot(xy[0, 0], xy[0, 1], "o", color=cmap(norm(p.t_s)), ms=4, mec="white",
                zorder=6.6)
        if not p.accepted:
            ax.plot(xy[-1, 0], xy[-1, 1], "x", color="#ff4040", ms=7, mew=2, zorder=6.6)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("map x [m]", fontsize=8)
    ax.set_ylabel("map y [m]", fontsize=8)
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    cax = ax.inset_axes([0.78, 0.06, 0.2, 0.035])
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax, orientation="horizontal")
    cax.set_title("time [s]", fontsize=7, color="white", pad=2)
    cax.tick_params(labelsize=6.5, colors="white")
    handles = [Line2D([], [], color=cmap(0.6), marker="o", ls="", ms=4, label="ego track"),
               Line2D([], [], color=cmap(0.6), lw=1.8, marker="o", ms=3,
                      path_effects=outline, label="plan (accepted)"),
               Line2D([], [], color=cmap(0.6), lw=1.4, ls="--", path_effects=outline,
                      label="plan (rejected)"),
               Polygon(np.zeros((3, 2)), facecolor=cmap(0.6), edgecolor="white",
                       label="ego at a time"),
               Polygon(np.zeros((3, 2)), facecolor=cmap(0.6), edgecolor="#f08a24",
                       label="agent at that time")]
    ax.legend(handles=handles, fontsize=7, loc="upper left", ncol=5, framealpha=0.8)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


# --------------------------------------------------------------------------- HTML
_INLINE = [(re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
           (re.compile(r"\*\*([^*]+)\*\*"), r"<b>\1</b>")]


def _inline(text: str) -> str:
    out = html.escape(text)
    for pattern, repl in _INLINE:
        out = pattern.sub(repl, out)
    return out


def markdown_to_html(markdown: str) -> str:
    """HTML of the markdown subset our summaries use; everything else is escaped text.

    Headings, pipe tables, ``- `` lists, paragraphs, ```code``` and ``**bold**``.
    """
    out: list[str] = []
    lines = markdown.splitlines()
    k = 0
    while k < len(lines):
        line = lines[k].strip()
        if not line:
            k += 1
        elif line.startswith("#"):
            level = min(6, len(line) - len(line.lstrip("#")) + 2)
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
            k += 1
        elif line.startswith("|"):
            rows = []
            while k < len(lines) and lines[k].strip().startswith("|"):
                rows.append([c.strip() for c in lines[k].strip().strip("|").split("|")])
                k += 1
            body = [r for r in rows if not all(re.fullmatch(r":?-+:?", c) for c in r if c)]
            head = "".join(f"<th>{_inline(c)}</th>" for c in body[0]) if body else ""
            cells = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                            for r in body[1:])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
        elif line.startswith(("- ", "* ")):
            items = []
            while k < len(lines) and lines[k].strip().startswith(("- ", "* ")):
                items.append(f"<li>{_inline(lines[k].strip()[2:])}</li>")
                k += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while k < len(lines) and lines[k].strip() and not lines[k].strip().startswith(
                    ("#", "|", "- ", "* ")):
                para.append(lines[k].strip())
                k += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


def _value(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k}: {_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v)
    return str(v)


def _rows_table(rows: Sequence[Mapping[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_value(r.get(c)))}</td>" for c in cols)
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metrics_row(m: Mapping[str, Any]) -> str:
    def pct(v: Any) -> str:
        return "–" if v is None else f"{100 * float(v):.0f} %"

    broken = m.get("comfort_broken") or {}
    comfort = _value(m.get("comfort")) + (
        " (" + ", ".join(sorted(broken)) + ")" if isinstance(broken, Mapping) and broken
        else "")
    hits = m.get("collisions") or []
    collision = _value(m.get("collision"))
    if hits:
        collision += " (" + ", ".join(
            f"{h.get('agent', '?')} at {h.get('t_s', '?')} s"
            + ("" if h.get("at_fault") else ", not at fault") for h in hits
            if isinstance(h, Mapping)) + ")"
    progress = "–" if m.get("progress_m") is None else (
        f"{float(m['progress_m']):.0f} m ({pct(m.get('progress_ratio'))} of expert)")
    rejected = m.get("rejected_plans")
    interventions = "–" if rejected is None else (
        f"{rejected} of {m.get('plans', '?')} plans rejected, "
        f"{pct(m.get('fallback_share'))} of cycles degraded/fallback")
    pdms = m.get("pdm_score")
    row = {"collision (at fault)": collision, "close encounter": _value(m.get("close_encounter")),
           "off-road": _value(m.get("off_road")), "progress": progress, "comfort": comfort,
           "safety interventions": interventions,
           "PDMS": "–" if pdms is None else f"{float(pdms):.3f}"}
    return _rows_table([row])


def _plan_at(plans: Sequence[ReportPlan], t: float) -> ReportPlan | None:
    if not plans:
        return None
    best = min(plans, key=lambda p: abs(p.t_s - t))
    return best if abs(best.t_s - t) <= FRAME_PLAN_MATCH_S else None


def _decisions(p: ReportPlan) -> str:
    lon, lat = p.decisions
    return f"{lon or '–'} / {lat or '–'}"


def _bev_plans(scenario: ReportScenario) -> list[ReportPlan]:
    plans = scenario.plans
    if len(plans) <= MAX_BEV_PLANS:
        return list(plans)
    if scenario.frames:
        picked: list[ReportPlan] = []
        for f in _spread(scenario.frames, MAX_BEV_PLANS):
            p = _plan_at(plans, f.t_s)
            if p is not None and all(p is not q for q in picked):
                picked.append(p)
        if picked:
            return picked
    return _spread(plans, MAX_BEV_PLANS)


def _spread(items: Sequence[Any], n: int) -> list[Any]:
    """At most ``n`` items evenly spread over ``items`` (first and last included)."""
    if len(items) <= n:
        return list(items)
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in dict.fromkeys(idx.tolist())]


def scenario_bev(scenario: ReportScenario, width_px: int = 1100) -> np.ndarray:
    """The scenario's BEV: a few plans, boxes at the frames' times (or spread over time)."""
    times = [f.t_s for f in _spread(scenario.frames, MAX_BEV_SNAPSHOTS)] or None
    return bev_figure(scenario.world, scenario.ego_track, _bev_plans(scenario),
                      scenario.agents_track, times, scenario.ego_size_m,
                      f"{scenario.title} ({scenario.family}, seed {scenario.seed})", width_px)


def _scenario_html(sc: ReportScenario, index: int, tile_width: int, jpeg_quality: int) -> str:
    anchor = f"s{index}"
    parts = [f'<section id="{anchor}"><h2>{index + 1}. {html.escape(sc.title)} '
             f'<span class="dim">{html.escape(sc.family)}, seed {sc.seed}</span></h2>',
             _metrics_row(sc.metrics)]
    dec = sc.metrics.get("decisions") if isinstance(sc.metrics, Mapping) else None
    if dec:
        parts.append(f'<p class="dim">decisions over the run: '
                     f'{html.escape(_value(dec.get("longitudinal", {})))} | '
                     f'{html.escape(_value(dec.get("lateral", {})))}</p>')
    for note in sc.notes:
        parts.append(f"<p>{_inline(note)}</p>")
    if sc.frames:
        parts.append('<h3>Cameras over time (plan drawn into the front camera)</h3>'
                     '<div class="strip">')
        for fr in sc.frames:
            src = _encode(frame_mosaic(fr, sc.rig, tile_width), "jpeg", jpeg_quality)
            p = _plan_at(sc.plans, fr.t_s)
            cap = f"t = {fr.t_s:.1f} s"
            if p is not None:
                cap += (f" · {_decisions(p)} · "
                        + ("accepted" if p.accepted else "rejected: "
                           + ", ".join(p.failed_checks)) + f" · {p.safety_state or '–'}")
            if fr.plan_xy_ego is None:
                cap += " · no plan"
            parts.append(f'<figure><img src="{src}" alt="cameras at {fr.t_s:.1f} s">'
                         f"<figcaption>{html.escape(cap)}</figcaption></figure>")
        parts.append("</div>")
    parts.append("<h3>Bird's-eye view</h3>")
    parts.append(f'<img class="bev" src="{_encode(scenario_bev(sc), "png")}" '
                 f'alt="bird\'s-eye view of {html.escape(sc.family)}">')
    parts.append(f"<h3>Reasoning at each plan ({len(sc.plans)})</h3>")
    if sc.plans:
        rows = []
        for p in sc.plans:
            verdict = "accepted" if p.accepted else "rejected: " + (
                ", ".join(p.failed_checks) or "–")
            cls = "" if p.accepted else ' class="rejected"'
            rows.append(f"<tr{cls}><td>{p.t_s:.1f}</td><td>{html.escape(_decisions(p))}</td>"
                        f"<td>{html.escape(verdict)}</td>"
                        f"<td>{html.escape(p.safety_state or '–')}</td>"
                        f"<td>{html.escape(p.reasoning) or '<i>(no reasoning)</i>'}</td></tr>")
        parts.append('<table class="reasoning"><thead><tr><th>t [s]</th>'
                     "<th>decisions (long. / lat.)</th><th>safety monitor</th>"
                     "<th>controller</th><th>reasoning</th></tr></thead><tbody>"
                     + "".join(rows) + "</tbody></table>")
    else:
        parts.append("<p><b>No plan reached the controller.</b></p>")
    parts.append("</section>")
    return "\n".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em;
color:#1d1d1f;background:#fafafa;max-width:1500px}
h1{margin-bottom:.2em}h2{margin-top:2em;border-bottom:2px solid #ccc}.dim{color:#666;
font-weight:normal;font-size:.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eee}tr.rejected td{background:#fde8e8}
table.reasoning td:last-child{max-width:760px}
.strip{display:flex;gap:10px;overflow-x:auto;padding-bottom:6px}
.strip figure{margin:0;flex:0 0 auto}.strip img{width:960px;display:block}
figcaption{font-size:.8em;color:#333;padding:2px}
img.bev{max-width:100%}code{background:#eee;padding:0 3px}
"""


def write_report(scenarios: Sequence[ReportScenario], out_html: str | Path, title: str,
                 summary: str | Sequence[Mapping[str, Any]] = "",
                 notes: Sequence[str] = (), tile_width: int = 288,
                 jpeg_quality: int = 80) -> Path:
    """Write the self-contained HTML report (see the module docstring); returns its path.

    ``summary`` is markdown (e.g. a table) or rows of dicts (one table); ``notes`` are
    lines shown under it. ``tile_width`` (pixels per small camera tile; the plan camera
    gets twice that) and ``jpeg_quality`` set the file size. Measured at the defaults:
    1.64 MB for 5 scenarios x 5 frames of the ``ar1`` rig's 7 rendered cameras (expert
    episodes of lead_at_red_light, cut_in, hidden_pedestrian, merge, stop_sign, seed 9000,
    rendered by :class:`~alpamayo_ros.data.render.SceneRenderer`), about 45 kB per mosaic
    JPEG and 40 kB per BEV PNG before base64.
    """
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class=\"dim\">written {stamp}, "
             f"{len(scenarios)} scenario(s)</p>"]
    if isinstance(summary, str):
        if summary.strip():
            parts.append(markdown_to_html(summary))
    elif summary:
        parts.append(_rows_table(list(summary)))
    if notes:
        parts.append("<ul>" + "".join(f"<li>{_inline(n)}</li>" for n in notes) + "</ul>")
    if scenarios:
        parts.append("<p>" + " · ".join(
            f'<a href="#s{k}">{html.escape(sc.title)}</a>' for k, sc in enumerate(scenarios))
            + "</p>")
    for k, sc in enumerate(scenarios):
        parts.append(_scenario_html(sc, k, tile_width, jpeg_quality))
    parts.append("</body></html>")
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def write_preview_png(scenario: ReportScenario, path: str | Path, tile_width: int = 288,
                      max_bytes: int = 900_000) -> Path:
    """One camera mosaic with the plan (the middle frame) above the scenario's BEV, as PNG.

    Scaled down until it fits ``max_bytes``; without frames: the BEV alone.
    """
    bev = scenario_bev(scenario)
    if scenario.frames:
        frame = scenario.frames[len(scenario.frames) // 2]
        top = frame_mosaic(frame, scenario.rig, tile_width)
        h = int(round(bev.shape[0] * top.shape[1] / bev.shape[1]))
        bev = cv2.resize(bev, (top.shape[1], h), interpolation=cv2.INTER_AREA)
        image = np.vstack([top, bev])
    else:
        image = bev
    return save_png(image, path, max_bytes=max_bytes)


def camera_by_name(rig: RigConfig, name: str = PLAN_CAMERA) -> CameraConfig:
    """The rig's camera called ``name`` (ValueError naming the cameras when absent)."""
    for cam in rig.cameras:
        if cam.name == name:
            return cam
    raise ValueError(f"camera {name!r} is not in the rig, which has "
                     f"{[c.name for c in rig.cameras]}")
