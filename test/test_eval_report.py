"""The demo's HTML report: plan overlay geometry, BEV, the self-contained HTML file."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from alpamayo_ros.data.cameras import make_rig
from alpamayo_ros.data.scenarios import make_scenario
from alpamayo_ros.eval.report import (
    ReportFrame,
    ReportPlan,
    ReportScenario,
    bev_figure,
    camera_by_name,
    frame_mosaic,
    markdown_to_html,
    plan_overlay,
    plan_to_map,
    write_preview_png,
    write_report,
)

RIG = make_rig("ar1")
FRONT = camera_by_name(RIG, "front_wide")


def _drawn(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(np.any(before != after, axis=2))
    return rows, cols


def _horizon_row(cam, height_px: int) -> float:
    return height_px / 2 - cam.focal_px * height_px / cam.height_px * math.tan(
        math.radians(cam.pitch_deg))


def _straight(n: int = 64, speed: float = 10.0, y: float = 0.0) -> np.ndarray:
    x = speed * 0.1 * np.arange(1, n + 1)
    return np.column_stack([x, np.full(n, y)])


def test_straight_plan_lands_at_the_centre_below_the_horizon():
    img = np.zeros((FRONT.height_px, FRONT.width_px, 3), np.uint8)
    out = plan_overlay(img, _straight(), FRONT)
    rows, cols = _drawn(img, out)
    assert len(rows) > 50
    assert abs(np.median(cols) - FRONT.width_px / 2) < 3
    assert np.all(cols > FRONT.width_px / 2 - 6) and np.all(cols < FRONT.width_px / 2 + 6)
    assert rows.min() > _horizon_row(FRONT, FRONT.height_px)
    assert rows.max() == FRONT.height_px - 1  # the near points reach the image bottom
    assert not img.any()  # the input is not modified


def test_plan_to_the_left_lands_left_of_centre_and_right_to_the_right():
    img = np.zeros((FRONT.height_px, FRONT.width_px, 3), np.uint8)
    centre = FRONT.width_px / 2
    for side in (1.0, -1.0):  # 2 m to the left (+y), then 2 m to the right
        rows, cols = _drawn(img, plan_overlay(img, _straight(y=2.0 * side), FRONT))
        assert len(cols) > 50 and rows.min() > _horizon_row(FRONT, FRONT.height_px)
        # left in the world is left (smaller u) in the image, converging to the centre
        assert np.all((cols - centre) * side < 0) and abs(np.median(cols) - centre) > 20


def test_overlay_scales_to_the_image_and_drops_points_behind_the_camera():
    small = np.zeros((FRONT.height_px // 2, FRONT.width_px // 2, 3), np.uint8)
    rows, cols = _drawn(small, plan_overlay(small, _straight(), FRONT))
    assert abs(np.median(cols) - small.shape[1] / 2) < 2
    assert rows.min() > _horizon_row(FRONT, small.shape[0])
    behind = np.column_stack([-np.linspace(3, 30, 20), np.zeros(20)])
    assert np.array_equal(plan_overlay(small, behind, FRONT), small)
    nan_plan = _straight()
    nan_plan[::3] = np.nan  # non-finite points are dropped, not drawn at 0
    assert np.isfinite(plan_overlay(small, nan_plan, FRONT)).all()
    with pytest.raises(ValueError, match="plan_xy_ego"):
        plan_overlay(small, np.zeros((5, 3)), FRONT)
    with pytest.raises(ValueError, match="image"):
        plan_overlay(small.astype(np.float32), _straight(), FRONT)


class _TagBalance(HTMLParser):
    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.errors.append(tag)


def _scenario(family: str = "lead_at_red_light", seed: int = 9000, frames: int = 2,
              with_agents: bool = True) -> ReportScenario:
    """A hand-made straight drive along the scenario's road (lane 0), 8 s at 8 m/s."""
    world = make_scenario(family, seed).world
    road = world.road
    t = np.arange(0.0, 8.0, 0.1)
    s = world.ego.s + 8.0 * t
    x, y, h = road.to_world(s, np.zeros_like(s))
    track = np.column_stack([t, x, y, h, np.full_like(t, 8.0)])
    plans = []
    for k, tp in enumerate(np.arange(0.5, 7.6, 0.5)):
        i = int(round(tp * 10))
        ego = _straight(speed=8.0)
        plans.append(ReportPlan(float(tp), ego, plan_to_map(ego, x[i], y[i], h[i]),
                                f"Plan {k}: keep the lane <because> the light & lead {k}.",
                                ("set_speed_tracking", "lane_keeping"), k != 3,
                                () if k != 3 else ("collision",),
                                "OK" if k != 3 else "DEGRADED"))
    agents = []
    for ti, xi, yi, hi in zip(t, x, y, h):
        arr = np.array([[xi + 20 * math.cos(hi), yi + 20 * math.sin(hi), hi, 4.6, 1.9,
                         8 * math.cos(hi), 8 * math.sin(hi)]]) if with_agents else np.zeros((0, 7))
        agents.append((float(ti), arr, ("lead",) if with_agents else ()))
    shade = np.linspace(0, 255, RIG.cameras[0].width_px, dtype=np.uint8)
    base = np.broadcast_to(shade[None, :, None], (RIG.cameras[0].height_px, len(shade), 3))
    report_frames = [ReportFrame(float(tf), {c.name: base.copy() for c in RIG.cameras},
                                 _straight(speed=8.0))
                     for tf in np.linspace(1.0, 7.0, frames)]
    metrics = {"family": family, "seed": seed, "collision": False, "collisions": [],
               "close_encounter": False, "off_road": False, "progress_m": 63.2,
               "progress_ratio": 0.91, "comfort": False,
               "comfort_broken": {"longitudinal_jerk_mps3": 3.1}, "rejected_plans": 1,
               "plans": len(plans), "fallback_share": 0.05, "pdm_score": 0.8123,
               "decisions": {"longitudinal": {"set_speed_tracking": 15}}}
    return ReportScenario(family, seed, "Red light behind a braking lead", metrics, track,
                          agents, plans, report_frames, world, RIG)


def test_bev_figure_draws_road_track_and_boxes():
    sc = _scenario()
    img = bev_figure(sc.world, sc.ego_track, sc.plans[:3], sc.agents_track, [1.0, 4.0])
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape[1] == 1100 and img.shape[0] >= 300
    # the road grey and the ego/plan colours are there, not a blank canvas
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50
    road = np.all(np.abs(img.astype(int) - (0x8C, 0x8C, 0x90)) <= 2, axis=2)
    assert road.mean() > 0.02
    with pytest.raises(ValueError, match="ego_track"):
        bev_figure(sc.world, np.zeros((4, 3)))


def test_frame_mosaic_puts_the_plan_into_the_large_front_tile():
    sc = _scenario(frames=1)
    frame = sc.frames[0]
    with_plan = frame_mosaic(frame, RIG, tile_width=160)
    bare = frame_mosaic(ReportFrame(frame.t_s, frame.images, None), RIG, tile_width=160)
    th = int(round(160 * FRONT.height_px / FRONT.width_px))
    assert with_plan.shape == (2 * th, 2 * 160 + 3 * 160, 3)
    changed = np.any(with_plan != bare, axis=2)
    rows, cols = np.nonzero(changed[th // 2:, :])  # below the label
    assert len(cols) > 20 and cols.max() < 2 * 160  # only in the front tile
    assert abs(np.median(cols) - 160) < 4  # straight ahead: its centre column


def test_write_report_is_one_self_contained_file(tmp_path):
    scenarios = [_scenario(), _scenario("cut_in", 9001, frames=3, with_agents=False)]
    summary = ("# Demo\n\n| scenario | progress | PDMS |\n|---|---|---|\n"
               "| red light | 63 m | 0.812 |\n")
    out = write_report(scenarios, tmp_path / "demo" / "report.html", "Demo <report>",
                       summary, ["policy: shipped weights `weights/default`"])
    assert list(out.parent.iterdir()) == [out]
    text = out.read_text(encoding="utf-8")
    for sc in scenarios:
        for p in sc.plans:
            assert (p.reasoning.replace("&", "&amp;").replace("<", "&lt;")
                    .replace(">", "&gt;")) in text
    assert "Demo &lt;report&gt;" in text and "<code>weights/default</code>" in text
    assert "<td>0.812</td>" in text  # the summary table
    assert "0.812" in text and "63 m (91 % of expert)" in text  # the metrics rows
    assert "rejected: collision" in text and "DEGRADED" in text
    images = re.findall(r'<img[^>]*src="([^"]*)"', text)
    assert len(images) == 2 + 3 + len(scenarios)  # mosaics + one BEV each
    assert all(src.startswith(("data:image/jpeg;base64,", "data:image/png;base64,"))
               for src in images)
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text)
    assert all(r.startswith(("data:image/", "#")) for r in refs)
    lowered = text.lower()
    for bad in ("http://", "https://", "file:", "<script", "<link", "url(", "@import"):
        assert bad not in lowered
    checker = _TagBalance()
    checker.feed(text)
    assert checker.errors == [] and checker.stack == []  # well-formed: every tag closed
    for src in images[:1]:
        raw = np.frombuffer(__import__("base64").b64decode(src.split(",", 1)[1]), np.uint8)
        assert cv2.imdecode(raw, cv2.IMREAD_COLOR) is not None


def test_write_report_accepts_rows_and_empty_plans(tmp_path):
    sc = _scenario(frames=1)
    sc.plans = []
    out = write_report([sc], tmp_path / "r.html", "t", [{"scenario": "a", "pdms": 0.5}])
    text = out.read_text()
    assert "<th>scenario</th>" in text and "<td>0.5</td>" in text
    assert "No plan reached the controller" in text


def test_write_preview_png(tmp_path):
    path = write_preview_png(_scenario(frames=3), tmp_path / "preview.png")
    img = cv2.imread(str(path))
    assert img is not None and img.shape[1] == 5 * 288 and img.shape[0] > 2 * 180


def test_records_reject_bad_input():
    sc = _scenario(frames=1)
    with pytest.raises(ValueError, match="plan_xy_map"):
        ReportPlan(0.0, np.zeros((64, 2)), np.zeros((63, 2)))
    assert ReportPlan(0.0, np.zeros((2, 2)), np.zeros((2, 2)), safety_state="-"
                      ).safety_state == ""  # unknown
    with pytest.raises(ValueError, match="safety_state"):
        ReportPlan(0.0, np.zeros((64, 2)), np.zeros((64, 2)), safety_state="fine")
    with pytest.raises(ValueError, match="images"):
        ReportFrame(0.0, {"front_wide": np.zeros((10, 10), np.uint8)})
    with pytest.raises(ValueError, match="ego_track"):
        ReportScenario("f", 0, "t", {}, np.zeros((3, 4)), [], [], [], sc.world, RIG)
    with pytest.raises(ValueError, match="agents_track"):
        ReportScenario("f", 0, "t", {}, sc.ego_track, [(0.0, np.zeros((2, 7)), ("a",))],
                       [], [], sc.world, RIG)
    with pytest.raises(ValueError, match="rig"):
        frame_mosaic(ReportFrame(0.0, {"nope": np.zeros((8, 8, 3), np.uint8)}), RIG)


def test_markdown_subset():
    out = markdown_to_html("## T\n\npara <x> `c`\n\n- a\n- **b**\n\n|h|\n|-|\n|v|")
    assert "<h4>T</h4>" in out and "<p>para &lt;x&gt; <code>c</code></p>" in out
    assert "<li><b>b</b></li>" in out and "<th>h</th>" in out and "<td>v</td>" in out


def test_plan_to_map():
    ego = np.array([[1.0, 0.0], [0.0, 2.0]])
    out = plan_to_map(ego, 10.0, -5.0, math.pi / 2)  # heading +y: forward is +y, left is -x
    np.testing.assert_allclose(out, [[10.0, -4.0], [8.0, -5.0]], atol=1e-12)


def test_bev_shows_plans_spread_over_the_whole_run():
    from alpamayo_ros.eval import report

    sc = _scenario(frames=10)  # frames from 1 s to 7 s, plans every 0.5 s
    times = [p.t_s for p in report._bev_plans(sc)]
    assert len(times) == report.MAX_BEV_PLANS and times == sorted(times)
    assert times[0] == 1.0 and times[-1] == 7.0
    sc.frames = []
    times = [p.t_s for p in report._bev_plans(sc)]
    assert times[0] == sc.plans[0].t_s and times[-1] == sc.plans[-1].t_s
