"""Cameras, renderer, MCAP round trip, dataset, cache, mosaic and ``alpamayo generate``.

The bag is read back with both rosbags and mcap-ros2-support.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from alpamayo_ros.data.bag import (
    NAVIGATION_TOPIC,
    BagConfig,
    EncodedImage,
    decode_image,
    read_bag,
    write_episode_bag,
)
from alpamayo_ros.data.cameras import CameraConfig, RigConfig, ar1_rig, make_rig
from alpamayo_ros.data.coc import label_episode
from alpamayo_ros.data.dataset import BagDataset, load_cache, write_cache
from alpamayo_ros.data.mosaic import mosaic, project_ego_points, save_png
from alpamayo_ros.data.render import SIGNAL_COLOUR_SWAP, SceneRenderer
from alpamayo_ros.data.scenarios import make_scenario, simulate
from alpamayo_ros.data.world import Agent, EgoState, Road, RoadConfig, World
from alpamayo_ros.unicycle import integrate


def test_camera_geometry_projects_forward_point_to_centre():
    cam = CameraConfig("front", 90.0, 100, 60, 1.0, 0.0, 1.5, 0.0, 0.0)
    uv = project_ego_points(cam, np.array([[21.0, 0.0, 1.5], [11.0, 10.0, 1.5]]))
    np.testing.assert_allclose(uv[0], [50.0, 30.0], atol=1e-6)
    assert uv[1, 0] < 1.0  # 45 deg to the left lands on the left border (hfov 90)
    left = CameraConfig("left", 90.0, 100, 60, 0.0, 0.0, 1.5, 90.0, 0.0)
    np.testing.assert_allclose(project_ego_points(left, np.array([[0.0, 5.0, 1.5]]))[0],
                               [50.0, 30.0], atol=1e-6)
    with pytest.raises(ValueError, match="hfov_deg"):
        CameraConfig("x", 0.0)
    with pytest.raises(ValueError, match="names must be unique"):
        RigConfig([cam, cam])
    rig = ar1_rig()
    assert [c.name for c in rig.cameras] == ["front_wide", "front_tele", "cross_left",
                                             "cross_right", "rear_left", "rear_right",
                                             "rear_tele"]
    assert {(c.width_px, c.height_px) for c in rig.cameras} == {(448, 280)}


def _two_box_world(near: bool) -> SceneRenderer:
    from alpamayo_ros.data.scenarios import Episode

    road = Road(RoadConfig(segments=[(200.0, 0.0)], num_lanes=1))
    world = World(road, EgoState(10.0, 0.0, 0.0), appearance={"brightness": 1.0})
    world.agents.append(Agent("far", "van", 45.0, 0.0, mode="static", colour="blue"))
    if near:
        world.agents.append(Agent("near", "car", 25.0, 0.0, mode="static", colour="red"))
    from alpamayo_ros.data.expert import Expert, ExpertConfig
    from alpamayo_ros.data.scenarios import Scenario

    ep = simulate(Scenario("custom", 0, world, Expert(ExpertConfig()), duration_s=0.1))
    assert isinstance(ep, Episode)
    return SceneRenderer(ep)


def test_renderer_occludes_far_objects_behind_near_ones():
    cam = CameraConfig("front", 30.0, 160, 100, 1.5, 0.0, 1.2, 0.0, 0.0)
    centre = (50, 80)
    far_only = _two_box_world(False).render(0, [cam])[0]
    both = _two_box_world(True).render(0, [cam])[0]
    r, g, b = far_only[centre].astype(int)
    assert b > r + 40  # the blue van
    # The red car in front hides the van: its glass at the centre, its red body below.
    assert np.abs(both[centre].astype(int) - far_only[centre].astype(int)).max() > 40
    r, g, b = both[69, 80].astype(int)
    assert r > b + 40


def test_traffic_light_colour_is_visible():
    ep = simulate(make_scenario("red_light", 0))
    renderer = SceneRenderer(ep)
    cam = CameraConfig("front", 40.0, 320, 200, 1.6, 0.0, 1.55, 0.0, 0.0)

    def lamp_pixels(i: int, rgb: tuple[int, int, int]) -> int:
        img = renderer.render(i, [cam])[0].astype(int)
        return int(np.sum(np.all(np.abs(img - np.array(rgb)) < 30, axis=-1)))

    line = ep.world.lights[0].stop_line_s
    red = next(i for i, f in enumerate(ep.frames) if f.lights["light"] == "red"
               and f.ego.s > line - 40)
    green = max(i for i, f in enumerate(ep.frames[:red]) if f.lights["light"] == "green")
    assert lamp_pixels(red, (255, 40, 30)) > 0
    assert lamp_pixels(red, (40, 255, 90)) == 0
    assert lamp_pixels(green, (40, 255, 90)) > 0
    assert lamp_pixels(green, (255, 40, 30)) == 0


def test_a_car_stopped_at_the_line_sees_its_signal_turn_green():
    """The head hangs across the junction, so the car waiting at the line still sees it."""
    ep = simulate(make_scenario("red_light", 0))
    tele = next(c for c in ar1_rig(160, 96).cameras if c.name == "front_tele")
    renderer = SceneRenderer(ep)
    line = ep.world.lights[0].stop_line_s
    waiting = [i for i, f in enumerate(ep.frames)
               if f.lights["light"] == "red" and f.ego.v_mps < 0.3
               and line - (f.ego.s + f.ego.length_m / 2) < 6.0]
    assert waiting, "the expert stops at the red line in red_light 0"
    going = next(i for i in range(waiting[-1], len(ep.frames))
                 if ep.frames[i].lights["light"] == "green")

    def lamp_pixels(i: int, rgb: tuple[int, int, int]) -> int:
        img = renderer.render(i, [tele])[0].astype(int)
        return int(np.sum(np.all(np.abs(img - np.array(rgb)) < 30, axis=-1)))

    assert lamp_pixels(waiting[-1], (255, 40, 30)) > 0
    assert lamp_pixels(waiting[-1], (40, 255, 90)) == 0
    assert lamp_pixels(going, (40, 255, 90)) > 0
    assert lamp_pixels(going, (255, 40, 30)) == 0


def test_signal_counterfactual_swaps_red_and_green_only():
    ep = simulate(make_scenario("red_light", 0))
    cam = CameraConfig("front", 40.0, 320, 200, 1.6, 0.0, 1.55, 0.0, 0.0)
    real, swapped = SceneRenderer(ep), SceneRenderer(ep, swap_signal_colours=True)
    line = ep.world.lights[0].stop_line_s
    red = next(i for i, f in enumerate(ep.frames) if f.lights["light"] == "red"
               and f.ego.s > line - 40)
    a, b = (r.render(red, [cam])[0].astype(int) for r in (real, swapped))

    def count(img: np.ndarray, rgb: tuple[int, int, int]) -> int:
        return int(np.sum(np.all(np.abs(img - np.array(rgb)) < 30, axis=-1)))

    assert count(a, (255, 40, 30)) > 0 and count(a, (40, 255, 90)) == 0
    assert count(b, (40, 255, 90)) > 0 and count(b, (255, 40, 30)) == 0
    changed = np.abs(a - b).max(-1) > 0
    assert 0 < changed.sum() < 0.01 * changed.size  # the lamps, nothing else
    assert SIGNAL_COLOUR_SWAP["yellow"] == "yellow"


def test_full_rig_renders_seven_images():
    ep = simulate(make_scenario("hidden_pedestrian", 0, duration_s=1.0))
    rig = ar1_rig()
    imgs = SceneRenderer(ep).render(5, rig.cameras)
    assert len(imgs) == 7
    for img in imgs:
        assert img.shape == (280, 448, 3) and img.dtype == np.uint8
        assert img.std() > 10  # not a flat fill


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    ep = simulate(make_scenario("lead_at_red_light", 0, duration_s=9.0))
    kfs = label_episode(ep)
    assert kfs
    path = write_episode_bag(ep, kfs, make_rig("tiny"), tmp_path_factory.mktemp("b") / "bag")
    return ep, kfs, path


def test_bag_round_trips_through_rosbags(small_bag):
    ep, kfs, path = small_bag
    c = read_bag(path)
    assert len(c.odom_ns) == len(ep.frames)
    np.testing.assert_allclose(c.odom_xyhv[:, :2], ep.ego_xyhv()[:, :2], atol=1e-9)
    assert set(c.images) == {"cross_left", "front_wide", "cross_right", "front_tele"}
    assert all(len(v) == len(ep.frames) for v in c.images.values())
    assert c.images["front_wide"][0][1].shape == (60, 96, 3)
    assert len(c.reasoning) == len(kfs)
    msg = c.reasoning[min(c.reasoning)]
    assert msg.text == kfs[0].label.text
    assert [x.id for x in msg.critical_components] == [x.id for x in kfs[0].label.components]
    traj = next(iter(c.trajectories.values()))
    assert len(traj.points) == 64
    # Controls are the unicycle fit of the plan: integrated from the odometry speed they
    # land on the plan's own points.
    assert len(c.trajectories) == len(ep.frames) - 64
    for ns, traj in list(c.trajectories.items())[::10]:
        i = int(np.searchsorted(c.odom_ns, ns))
        pts = np.array([[p.x, p.y, p.acceleration, p.curvature] for p in traj.points])
        st = integrate(pts[:, 2], pts[:, 3], c.odom_xyhv[i, 3])
        assert np.hypot(st.x_m - pts[:, 0], st.y_m - pts[:, 1]).max() < 0.1
    obstacles = c.obstacles[min(c.obstacles)]
    assert [o.id for o in obstacles.obstacles] == [a.id for a in ep.frames[0].agents]


def test_bag_round_trips_through_mcap_ros2(small_bag):
    from mcap_ros2.reader import read_ros2_messages

    ep, kfs, path = small_bag
    ours = read_bag(path)
    mcap = next(path.glob("*.mcap"))
    topics: dict[str, int] = {}
    texts, odom, first_jpeg, traj = [], [], None, None
    for m in read_ros2_messages(str(mcap)):
        topic = m.channel.topic
        topics[topic] = topics.get(topic, 0) + 1
        if topic == "/planning/reference_reasoning":
            texts.append(m.ros_msg.text)
            assert m.ros_msg.critical_components
        elif topic == "/perception/obstacles":
            assert m.ros_msg.obstacles[0].classification == 1
        elif topic == "/localization/kinematic_state":
            odom.append((m.ros_msg.pose.pose.position.x, m.ros_msg.pose.pose.position.y))
        elif topic == "/sensing/camera/front_wide/image_raw/compressed" and first_jpeg is None:
            first_jpeg = m.ros_msg
        elif topic == "/planning/reference_trajectory" and traj is None:
            traj = m.ros_msg
    assert texts == [k.label.text for k in kfs]
    np.testing.assert_allclose(odom, ep.ego_xyhv()[:, :2], atol=1e-9)
    assert first_jpeg.format == "jpeg"
    np.testing.assert_array_equal(decode_image(first_jpeg, "sensor_msgs/msg/CompressedImage"),
                                  ours.images["front_wide"][0][1])
    first = ours.trajectories[min(ours.trajectories)]
    assert [p.curvature for p in traj.points] == [p.curvature for p in first.points]
    for name in ("front_wide", "front_tele"):
        assert topics[f"/sensing/camera/{name}/image_raw/compressed"] == 90
        assert topics[f"/sensing/camera/{name}/camera_info"] == 90
    assert topics["/localization/kinematic_state"] == 90


def test_raw_image_bag_through_both_readers(tmp_path):
    from mcap_ros2.reader import read_ros2_messages

    ep = simulate(make_scenario("cut_in", 0, duration_s=0.5))
    rig = make_rig("tiny")
    path = write_episode_bag(ep, [], rig, tmp_path / "raw", BagConfig(compressed=False))
    rendered = SceneRenderer(ep).render(2, rig.cameras)
    c = read_bag(path)
    for cam, img in zip(rig.cameras, rendered):
        np.testing.assert_array_equal(c.images[cam.name][2][1], img)  # lossless
    raw = [m.ros_msg for m in read_ros2_messages(str(next(path.glob("*.mcap"))))
           if m.channel.topic == "/sensing/camera/front_wide/image_raw"]
    assert len(raw) == 5 and raw[2].encoding == "rgb8"
    np.testing.assert_array_equal(decode_image(raw[2], "sensor_msgs/msg/Image"),
                                  rendered[[x.name for x in rig.cameras].index("front_wide")])


def test_dataset_view_and_cache(small_bag, tmp_path):
    ep, kfs, path = small_bag
    ds = BagDataset(path, history_frames=4, stride=10)
    labelled = [s for s in ds if s.coc is not None]
    assert len(labelled) == sum(1 for k in kfs if k.index + 64 < len(ep.frames))
    s = labelled[0]
    assert s.images.shape == (4, 4, 60, 96, 3)
    assert s.ego_history.shape == (16, 4) and s.future_xyh.shape == (64, 3)
    np.testing.assert_allclose(s.ego_history[-1, :3], 0.0, atol=1e-6)
    assert s.future_xyh[-1, 0] > 0.0
    assert np.all(np.isfinite(s.future_controls))
    st = integrate(s.future_controls[:, 0].astype(float), s.future_controls[:, 1].astype(float),
                   s.speed_mps)
    assert np.hypot(st.x_m - s.future_xyh[:, 0], st.y_m - s.future_xyh[:, 1]).max() < 0.1
    assert s.cameras[0].camera_to_ego[0, 3] != 0.0  # extrinsics from rig.json
    cache = write_cache(ds, tmp_path / "cache", shard_size=2)
    loaded = load_cache(cache)
    assert len(loaded) == len(ds)
    for a, b in zip(ds, loaded):
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_allclose(a.future_xyh, b.future_xyh)
        assert (a.coc is None) == (b.coc is None)
        if a.coc is not None:
            assert a.coc.text == b.coc.text
    assert isinstance(loaded.arrays("images")[0], np.memmap)


def test_navigation_round_trips_and_dataset_decodes_lazily(tmp_path):
    from mcap_ros2.reader import read_ros2_messages

    ep = simulate(make_scenario("turn", 0, duration_s=8.5))
    assert ep.navigation  # a route family always has a command
    path = write_episode_bag(ep, [], make_rig("tiny"), tmp_path / "nav")
    nav = [(m.log_time_ns, m.ros_msg.data) for m in read_ros2_messages(str(next(path.glob(
        "*.mcap")))) if m.channel.topic == NAVIGATION_TOPIC]
    eager = read_bag(path)
    assert nav == [(int(eager.odom_ns[0]), ep.navigation)]  # once, at the start (latched)
    assert eager.navigation == ep.navigation
    ds = BagDataset(path, stride=1)
    assert len(ds) == len(ep.frames) - 64 - 15
    assert all(isinstance(img, EncodedImage) for lst in ds.bags[0].images.values()
               for _, img in lst)
    held = sum(img.nbytes for lst in ds.bags[0].images.values() for _, img in lst)
    decoded = sum(img.nbytes for lst in eager.images.values() for _, img in lst)
    assert held < decoded / 3
    names = sorted(eager.images)
    for k in (0, len(ds) - 1):
        s = ds[k]
        i = s.meta["index"]
        assert s.navigation == ep.navigation and s.images.shape == (2, 4, 60, 96, 3)
        for c, n in enumerate(names):  # the same pixels as the eager reader, frames i-1, i
            np.testing.assert_array_equal(s.images[:, c],
                                          np.stack([eager.images[n][j][1] for j in (i - 1, i)]))


def test_mosaic_png(small_bag, tmp_path):
    ep, kfs, _ = small_bag
    rgb = mosaic(ep, kfs[-1], make_rig("tiny"), tile_width=96)
    path = save_png(rgb, tmp_path / "m.png", max_bytes=400_000)
    assert path.stat().st_size <= 400_000 and rgb.ndim == 3


def test_generate_command(tmp_path, capsys):
    from alpamayo_ros.cli import main

    rc = main(["generate", "--out", str(tmp_path / "out"), "--families", "cut_in",
               "--rig", "tiny", "--duration-s", "8.5", "--cache", str(tmp_path / "cache")])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["bags"]) == 1 and summary["keyframes"] >= 1
    keyframes_only = load_cache(tmp_path / "cache")
    assert len(keyframes_only) == summary["cached_samples"] >= 1
    assert keyframes_only[0].images.shape[0] == 2  # the presets' history frames
    # --stride 1 caches every step with 6.4 s of future (85 - 64 - 15), more frames on ask.
    rc = main(["cache", *summary["bags"], "--out", str(tmp_path / "all"), "--stride", "1",
               "--history-frames", "3"])
    assert rc == 0
    every = load_cache(tmp_path / "all")
    assert len(every) == 6 and every[0].images.shape[0] == 3
