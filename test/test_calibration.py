"""alpamayo_ros.calibration: TF transform math and the per-camera extrinsics source (no ROS)."""

import math

import numpy as np
import pytest

from alpamayo_ros.calibration import (
    SOURCE_RIG,
    SOURCE_TF,
    CameraExtrinsics,
    ExtrinsicsConfig,
    check_rigid,
    ego_pose_matrix,
    matrix_to_quaternion,
    matrix_to_transform,
    quaternion_to_matrix,
    transform_to_matrix,
)
from alpamayo_ros.data.cameras import make_rig


def random_quaternion(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return q / np.linalg.norm(q)


def test_quaternion_matrix_round_trip_over_random_and_half_turn_rotations() -> None:
    rng = np.random.default_rng(0)
    quats = [random_quaternion(rng) for _ in range(200)]
    # half turns about each axis and diagonals: trace <= 0, every branch of the inverse
    quats += [np.array(q, float) for q in ((1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0),
                                           (0.7071068, 0.7071068, 0, 0), (0, 0.6, 0.8, 0),
                                           (0, 0, 0, 1))]
    for q in quats:
        r = quaternion_to_matrix(q)
        assert np.allclose(r.T @ r, np.eye(3), atol=1e-12) and np.linalg.det(r) > 0
        back = np.array(matrix_to_quaternion(r))
        assert back[3] >= 0
        assert np.allclose(back, q * np.sign(q[3] or 1.0), atol=1e-9) or np.allclose(
            back, -q, atol=1e-9)  # q and -q are the same rotation
        assert np.allclose(quaternion_to_matrix(back), r, atol=1e-12)


def test_known_rotation_and_translation() -> None:
    half = math.sqrt(0.5)
    m = transform_to_matrix((1.0, 2.0, 3.0), (0.0, 0.0, half, half))  # +90 deg about z
    assert np.allclose(m @ [1.0, 0.0, 0.0, 1.0], [1.0, 3.0, 3.0, 1.0])  # x -> y, shifted
    assert np.allclose(transform_to_matrix((0, 0, 0), (0, 0, 0, 2.0)), np.eye(4))  # normalized
    t, q = matrix_to_transform(m)
    assert t == pytest.approx((1.0, 2.0, 3.0)) and q == pytest.approx((0.0, 0.0, half, half))


def test_ego_pose_then_camera_mount_places_the_camera_in_the_map() -> None:
    front = make_rig("ar1").cameras[0]
    cam_to_ego = front.geometry().camera_to_ego
    x, y, heading = 10.0, -4.0, math.radians(30.0)
    map_to_cam = ego_pose_matrix(x, y, heading) @ cam_to_ego
    # the camera origin: its mounting (x forward, y left, z up) rotated by the heading
    c, s = math.cos(heading), math.sin(heading)
    expected = (x + c * front.x_m - s * front.y_m, y + s * front.x_m + c * front.y_m,
                front.z_m)
    assert np.allclose(map_to_cam[:3, 3], expected)
    # the optical axis (camera z) points along the heading, pitched down by pitch_deg
    axis = map_to_cam[:3, :3] @ [0.0, 0.0, 1.0]
    pitch = math.radians(front.pitch_deg)
    assert np.allclose(axis, [c * math.cos(pitch), s * math.cos(pitch), -math.sin(pitch)])
    # and the TF form of it survives the round trip for every rig camera
    for cam in make_rig("ar1").cameras:
        m = cam.geometry().camera_to_ego
        assert np.allclose(transform_to_matrix(*matrix_to_transform(m)), m, atol=1e-12)


@pytest.mark.parametrize("bad", ["scaled", "reflected", "nan", "shape", "last_row"])
def test_non_rigid_transforms_are_refused(bad: str) -> None:
    m = ego_pose_matrix(1.0, 2.0, 0.3)
    if bad == "scaled":
        m[:3, :3] *= 1.01
    elif bad == "reflected":
        m[:3, 0] *= -1
    elif bad == "nan":
        m[0, 3] = math.nan
    elif bad == "shape":
        m = m[:3]
    else:
        m[3, 0] = 0.5
    with pytest.raises(ValueError):
        check_rigid(m)


@pytest.mark.parametrize("q", [(0, 0, 0, 0), (math.nan, 0, 0, 1), (math.inf, 0, 0, 1)])
def test_quaternions_that_are_no_rotation_are_refused(q) -> None:
    with pytest.raises(ValueError, match="quaternion"):
        quaternion_to_matrix(q)
    with pytest.raises(ValueError, match="translation"):
        transform_to_matrix((0.0, math.nan, 0.0), (0, 0, 0, 1))


def rig() -> dict[str, np.ndarray]:
    return {c.name: c.geometry().camera_to_ego for c in make_rig("tiny").cameras}


def test_extrinsics_take_tf_when_found_and_the_rig_otherwise() -> None:
    ext = CameraExtrinsics(rig(), tf_available=True)
    assert ext.summary() == SOURCE_RIG  # nothing looked up yet
    assert all(s.detail == "no TF lookup yet" for s in ext.states().values())
    calibrated = rig()["front_wide"].copy()
    calibrated[:3, 3] += (0.3, -0.05, 0.1)  # the vehicle's own mounting
    state = ext.update("front_wide", "front_wide_optical", calibrated)
    assert state.source == SOURCE_TF and state.tf_frame == "front_wide_optical"
    assert np.array_equal(ext.camera_to_ego("front_wide"), calibrated)
    ext.update("cross_left", "cross_left", None, "no TF base_link -> cross_left: not found")
    states = ext.states()
    assert states["cross_left"].source == SOURCE_RIG
    assert "not found" in states["cross_left"].detail
    assert np.array_equal(ext.camera_to_ego("cross_left"), rig()["cross_left"])
    assert ext.summary() == "mixed"
    # a frame that disappears (or turns invalid) falls back to the rig again
    bad = calibrated.copy()
    bad[:3, :3] *= 2.0
    state = ext.update("front_wide", "front_wide_optical", bad)
    assert state.source == SOURCE_RIG and "refused" in state.detail
    assert np.array_equal(ext.camera_to_ego("front_wide"), rig()["front_wide"])
    for cam in ext.cameras:
        ext.update(cam, cam, rig()[cam])
    assert ext.summary() == SOURCE_TF
    # callers get copies: the state cannot be changed from outside
    ext.camera_to_ego("front_wide")[0, 3] = 99.0
    assert ext.camera_to_ego("front_wide")[0, 3] != 99.0


def test_extrinsics_without_tf_keep_the_rig_and_say_why() -> None:
    ext = CameraExtrinsics(rig(), tf_available=False,
                           unavailable_reason="tf2_ros is not importable")
    assert ext.summary() == SOURCE_RIG
    assert {s.detail for s in ext.states().values()} == {"tf2_ros is not importable"}
    with pytest.raises(RuntimeError, match="tf_available"):
        ext.update("front_wide", "front_wide", np.eye(4))
    with pytest.raises(KeyError, match="unknown camera"):
        CameraExtrinsics(rig(), tf_available=True).update("roof", "roof", np.eye(4))
    with pytest.raises(ValueError, match="at least one camera"):
        CameraExtrinsics({}, tf_available=True)


def test_extrinsics_config_names_the_field() -> None:
    assert ExtrinsicsConfig().camera_extrinsics == "tf"
    with pytest.raises(ValueError, match="camera_extrinsics"):
        ExtrinsicsConfig(camera_extrinsics="guess")
