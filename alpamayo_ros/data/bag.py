"""rosbag2 (MCAP) output of simulated episodes, written and read with ``rosbags``.

Topics (stamps are the 10 Hz simulation clock from ``start_ns``):

- ``/sensing/camera/<name>/image_raw`` (sensor_msgs/Image, rgb8) or ``.../image_raw/compressed``
  (sensor_msgs/CompressedImage, jpeg) and ``/sensing/camera/<name>/camera_info``
- ``/localization/kinematic_state`` (nav_msgs/Odometry, frame ``map``)
- ``/perception/obstacles`` (alpamayo_ros/msg/ObstacleArray, frame ``map``)
- ``/planning/reference_trajectory`` (alpamayo_ros/msg/Trajectory, 64 points in
  ``base_link`` at the stamp: the expert's plan, published where 6.4 s of future exist;
  x, y, heading and velocity are the expert's poses, acceleration and curvature the
  unicycle controls fitted to them, :mod:`alpamayo_ros.data.controls`)
- ``/planning/reference_reasoning`` (alpamayo_ros/msg/Reasoning, at CoC keyframes)
- ``/planning/navigation_command`` (std_msgs/String, one message at the first stamp: the
  episode's route command, "" for none; the live graph's latched navigation topic)

:func:`read_bag` decodes every image by default; ``decode_images=False`` keeps each as
its message bytes (:class:`EncodedImage`, a few kB for a jpeg) to decode on demand.

The package's own message types are registered from ``msg/*.msg`` with
``rosbags.typesys.get_types_from_msg``; no ROS installation is needed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from alpamayo_ros import topics
from alpamayo_ros.data.cameras import CameraConfig, RigConfig
from alpamayo_ros.data.coc import Keyframe, ego_future, to_ego_frame
from alpamayo_ros.data.controls import PlanControls, episode_plan_controls
from alpamayo_ros.data.render import SceneRenderer
from alpamayo_ros.data.scenarios import Episode
from alpamayo_ros.sample import CameraGeometry
from alpamayo_ros.unicycle import DT_S, NUM_WAYPOINTS

MSG_DIR = Path(__file__).resolve().parents[2] / "msg"
PACKAGE = "alpamayo_ros"
ODOM_TOPIC = topics.ODOMETRY
OBSTACLE_TOPIC = topics.OBSTACLES
TRAJECTORY_TOPIC = topics.REFERENCE_TRAJECTORY
REASONING_TOPIC = topics.REFERENCE_REASONING
NAVIGATION_TOPIC = topics.NAVIGATION
MAP_FRAME = topics.MAP_FRAME
EGO_FRAME = topics.EGO_FRAME
CLASSIFICATION = {"car": 1, "van": 1, "truck": 1, "bus": 1, "ambulance": 1, "pedestrian": 2,
                  "cyclist": 3, "cone": 4, "barrier": 4}


image_topic = topics.image_topic  # the live graph's names: replay feeds the nodes as is
info_topic = topics.camera_info_topic


def make_typestore(msg_dir: Path = MSG_DIR) -> Typestore:
    """A ROS 2 Kilted typestore plus this package's messages from ``msg/*.msg``."""
    store = get_typestore(Stores.ROS2_KILTED)
    types: dict = {}
    for path in sorted(Path(msg_dir).glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    if not types:
        raise FileNotFoundError(f"no .msg files in {msg_dir}")
    store.register(types)
    return store


@dataclass
class BagConfig:
    """What goes into a bag."""

    compressed: bool = True  # jpeg CompressedImage instead of raw rgb8 Image
    jpeg_quality: int = 90
    start_ns: int = 1_700_000_000_000_000_000

    def __post_init__(self) -> None:
        if not 10 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [10, 100], got {self.jpeg_quality}")
        if self.start_ns < 0:
            raise ValueError(f"start_ns must be >= 0, got {self.start_ns}")


class _Msgs:
    """Constructors for the message types used here."""

    def __init__(self, store: Typestore) -> None:
        self.store = store
        self.t = store.types

    def time(self, ns: int):
        return self.t["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000,
                                                    nanosec=ns % 1_000_000_000)

    def duration(self, s: float):
        ns = int(round(s * 1e9))
        return self.t["builtin_interfaces/msg/Duration"](sec=ns // 1_000_000_000,
                                                        nanosec=ns % 1_000_000_000)

    def header(self, ns: int, frame: str):
        return self.t["std_msgs/msg/Header"](stamp=self.time(ns), frame_id=frame)

    def point(self, x: float, y: float, z: float):
        return self.t["geometry_msgs/msg/Point"](x=float(x), y=float(y), z=float(z))

    def vec(self, x: float, y: float, z: float):
        return self.t["geometry_msgs/msg/Vector3"](x=float(x), y=float(y), z=float(z))

    def pose(self, x: float, y: float, z: float, yaw: float):
        q = self.t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(yaw / 2),
                                                   w=math.cos(yaw / 2))
        return self.t["geometry_msgs/msg/Pose"](position=self.point(x, y, z), orientation=q)


def _yaw(q) -> float:
    return 2.0 * math.atan2(q.z, q.w)


def write_episode_bag(
    episode: Episode,
    keyframes: list[Keyframe],
    rig: RigConfig,
    out_dir: str | Path,
    config: BagConfig = BagConfig(),
    renderer: SceneRenderer | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Render and write one episode as a rosbag2 MCAP directory; returns its path."""
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} exists; rosbag2 writes a new directory")
    store = make_typestore()
    m = _Msgs(store)
    t = store.types
    renderer = renderer or SceneRenderer(episode)
    every = int(round(10.0 / rig.rate_hz))
    key_at = {k.index: k for k in keyframes}
    poses = episode.ego_xyhv()
    plan_index, plans = episode_plan_controls(episode, NUM_WAYPOINTS)
    plan_at = {int(i): k for k, i in enumerate(plan_index)}
    img_type = "sensor_msgs/msg/CompressedImage" if config.compressed else "sensor_msgs/msg/Image"
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        def conn(topic: str, msgtype: str):
            return w.add_connection(topic, msgtype, typestore=store)

        c_odom = conn(ODOM_TOPIC, "nav_msgs/msg/Odometry")
        c_obs = conn(OBSTACLE_TOPIC, f"{PACKAGE}/msg/ObstacleArray")
        c_traj = conn(TRAJECTORY_TOPIC, f"{PACKAGE}/msg/Trajectory")
        c_reason = conn(REASONING_TOPIC, f"{PACKAGE}/msg/Reasoning")
        c_nav = conn(NAVIGATION_TOPIC, "std_msgs/msg/String")
        c_img = {c.name: conn(image_topic(c.name, config.compressed), img_type)
                 for c in rig.cameras}
        c_info = {c.name: conn(info_topic(c.name), "sensor_msgs/msg/CameraInfo")
                  for c in rig.cameras}

        def put(connection, ns: int, msg) -> None:
            w.write(connection, ns, store.serialize_cdr(msg, connection.msgtype))

        # The route command holds for the whole episode: one (latched) message at the start.
        put(c_nav, config.start_ns, t["std_msgs/msg/String"](data=episode.navigation))
        for i, frame in enumerate(episode.frames):
            ns = config.start_ns + int(round(i * DT_S * 1e9))
            e = frame.ego
            odom = t["nav_msgs/msg/Odometry"](
                header=m.header(ns, MAP_FRAME), child_frame_id=EGO_FRAME,
                pose=t["geometry_msgs/msg/PoseWithCovariance"](
                    pose=m.pose(e.x, e.y, 0.0, e.heading), covariance=np.zeros(36)),
                twist=t["geometry_msgs/msg/TwistWithCovariance"](
                    twist=t["geometry_msgs/msg/Twist"](linear=m.vec(e.v_mps, 0, 0),
                                                       angular=m.vec(0, 0, 0)),
                    covariance=np.zeros(36)))
            put(c_odom, ns, odom)
            obstacles = [t[f"{PACKAGE}/msg/Obstacle"](
                id=a.id, classification=CLASSIFICATION.get(a.kind, 0),
                pose=m.pose(a.x, a.y, a.height_m / 2, a.heading),
                size=m.vec(a.length_m, a.width_m, a.height_m),
                velocity=m.vec(a.v_mps * math.cos(a.heading), a.v_mps * math.sin(a.heading), 0))
                for a in frame.agents]
            put(c_obs, ns, t[f"{PACKAGE}/msg/ObstacleArray"](header=m.header(ns, MAP_FRAME),
                                                            obstacles=obstacles))
            if i in plan_at:
                put(c_traj, ns, _trajectory_msg(m, episode, i, poses, plans, plan_at[i], ns))
            if i in key_at:
                put(c_reason, ns, _reasoning_msg(m, key_at[i], ns))
            if i % every == 0:
                images = renderer.render(i, rig.cameras)
                for cam, img in zip(rig.cameras, images):
                    put(c_info[cam.name], ns, _camera_info(m, cam, ns))
                    put(c_img[cam.name], ns, _image_msg(m, cam, img, ns, config))
            if progress is not None:
                progress(1)
    write_rig_json(rig, out / RIG_FILE)
    return out


RIG_FILE = "rig.json"  # camera mounting next to the MCAP (CameraInfo has no extrinsics)


def write_rig_json(rig: RigConfig, path: Path) -> None:
    """Save each camera's intrinsics and camera-to-ego transform as JSON."""
    cams = []
    for c in rig.cameras:
        g = c.geometry()
        cams.append({"name": c.name, "width_px": c.width_px, "height_px": c.height_px,
                     "intrinsics": g.intrinsics.tolist(),
                     "camera_to_ego": g.camera_to_ego.tolist()})
    path.write_text(json.dumps({"rate_hz": rig.rate_hz, "cameras": cams}, indent=1))


def read_rig_json(path: Path) -> dict[str, CameraGeometry]:
    """Camera geometries saved by :func:`write_rig_json`."""
    data = json.loads(Path(path).read_text())
    return {c["name"]: CameraGeometry(c["name"], c["width_px"], c["height_px"],
                                      np.array(c["intrinsics"]), np.array(c["camera_to_ego"]))
            for c in data["cameras"]}


def _trajectory_msg(m: _Msgs, episode: Episode, i: int, poses: np.ndarray,
                    plans: PlanControls, k_plan: int, ns: int):
    t = m.t
    fut = ego_future(episode, i, NUM_WAYPOINTS)
    speed = poses[i + 1: i + 1 + NUM_WAYPOINTS, 3]
    accel = plans.acceleration_mps2[k_plan]
    curvature = plans.curvature_per_m[k_plan]
    points = [t[f"{PACKAGE}/msg/TrajectoryPoint"](
        time_from_start=m.duration((k + 1) * DT_S), x=float(fut[k, 0]), y=float(fut[k, 1]),
        heading=float(fut[k, 2]), velocity=float(speed[k]), acceleration=float(accel[k]),
        curvature=float(curvature[k])) for k in range(NUM_WAYPOINTS)]
    return t[f"{PACKAGE}/msg/Trajectory"](
        header=m.header(ns, EGO_FRAME), model_id="expert", model_version="sim",
        points=points, samples=[], inference_time_s=float("nan"))


def _reasoning_msg(m: _Msgs, key: Keyframe, ns: int):
    t = m.t
    lab = key.label
    comps = [t[f"{PACKAGE}/msg/CriticalComponent"](
        type=int(c.type), uncertainty=int(c.uncertainty), id=c.id, description=c.description,
        position=m.point(*c.position_m)) for c in lab.components]
    return t[f"{PACKAGE}/msg/Reasoning"](
        header=m.header(ns, EGO_FRAME), longitudinal_decision=lab.longitudinal_decision,
        lateral_decision=lab.lateral_decision, critical_components=comps, text=lab.text,
        longitudinal_meta_action=lab.longitudinal_meta_action,
        lateral_meta_action=lab.lateral_meta_action)


def _camera_info(m: _Msgs, cam: CameraConfig, ns: int):
    k = cam.intrinsics()
    p = np.zeros((3, 4))
    p[:3, :3] = k
    return m.t["sensor_msgs/msg/CameraInfo"](
        header=m.header(ns, cam.name), height=cam.height_px, width=cam.width_px,
        distortion_model="plumb_bob", d=np.zeros(5), k=k.reshape(-1), r=np.eye(3).reshape(-1),
        p=p.reshape(-1), binning_x=0, binning_y=0,
        roi=m.t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                    do_rectify=False))


def _image_msg(m: _Msgs, cam: CameraConfig, img: np.ndarray, ns: int, config: BagConfig):
    header = m.header(ns, cam.name)
    if config.compressed:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
        if not ok:
            raise RuntimeError("jpeg encoding failed")
        return m.t["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg",
                                                      data=buf.reshape(-1))
    return m.t["sensor_msgs/msg/Image"](header=header, height=img.shape[0], width=img.shape[1],
                                        encoding="rgb8", is_bigendian=0, step=img.shape[1] * 3,
                                        data=np.ascontiguousarray(img).reshape(-1))


# --------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class EncodedImage:
    """An image message kept as its bytes: jpeg/png data or raw rgb8/bgr8 rows."""

    data: np.ndarray  # uint8, owned (not a view of the bag's read buffer)
    compressed: bool
    height: int = 0  # raw images only
    width: int = 0
    step: int = 0
    encoding: str = ""

    @staticmethod
    def from_msg(msg, msgtype: str) -> EncodedImage:
        """Keep ``msg``'s payload (Image or CompressedImage) without decoding it."""
        buf = np.array(_bytes(msg.data), np.uint8)  # a copy: the message buffer is freed
        if msgtype.endswith("CompressedImage"):
            return EncodedImage(buf, True)
        return EncodedImage(buf, False, int(msg.height), int(msg.width), int(msg.step),
                            str(msg.encoding))

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return int(self.data.nbytes)

    def decode(self) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        if self.compressed:
            img = cv2.imdecode(self.data, cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError("could not decode compressed image")
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if self.encoding not in ("rgb8", "bgr8"):
            raise ValueError(f"image encoding must be rgb8 or bgr8, got {self.encoding!r}")
        arr = self.data.reshape(self.height, self.step)[:, : self.width * 3]
        arr = arr.reshape(self.height, self.width, 3)
        return arr[..., ::-1].copy() if self.encoding == "bgr8" else arr.copy()


def _bytes(data) -> np.ndarray:
    """``msg.data`` as a uint8 array: a uint8 array (rosbags) or ``bytes`` (mcap-ros2)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, np.uint8)
    return np.asarray(data, np.uint8)


PLAN_FIELDS = ("x", "y", "heading", "velocity", "acceleration", "curvature")


@dataclass
class BagContents:
    """Everything read back from one bag, sorted by stamp."""

    odom_ns: np.ndarray  # (T,)
    odom_xyhv: np.ndarray  # (T, 4) map frame
    # camera -> [(ns, RGB array)], or [(ns, EncodedImage)] from read_bag(decode_images=False)
    images: dict[str, list[tuple[int, np.ndarray | EncodedImage]]]
    camera_info: dict[str, object]
    trajectories: dict[int, object]  # ns -> Trajectory message, or (N, 6) PLAN_FIELDS array
    reasoning: dict[int, object]  # ns -> Reasoning message
    obstacles: dict[int, object]
    navigation: str = ""  # the route command (last message on the navigation topic)

    def image(self, camera: str, k: int) -> np.ndarray:
        """RGB of the ``k``-th image of ``camera``, decoded now if it was kept encoded."""
        img = self.images[camera][k][1]
        return img.decode() if isinstance(img, EncodedImage) else img


def decode_image(msg, msgtype: str) -> np.ndarray:
    """RGB uint8 array of an Image (rgb8/bgr8) or CompressedImage message.

    ``msg.data`` may be a uint8 array (rosbags) or ``bytes`` (mcap-ros2-support).
    """
    return EncodedImage.from_msg(msg, msgtype).decode()


def _pack(images: list[tuple[int, EncodedImage]]) -> list[tuple[int, EncodedImage]]:
    """The same images with their bytes in one buffer, not thousands of small ones."""
    if not images:
        return images
    buf = np.concatenate([img.data for _, img in images])
    ends = np.cumsum([img.data.size for _, img in images])
    return [(ns, replace(img, data=buf[end - img.data.size: end]))
            for (ns, img), end in zip(images, ends.tolist())]


def read_bag(path: str | Path, decode_images: bool = True, skip: Collection[str] = (),
             plans_as_arrays: bool = False) -> BagContents:
    """Read a bag written by :func:`write_episode_bag` (or any bag with these topics).

    With ``decode_images=False`` images stay encoded (:class:`EncodedImage`), with
    ``plans_as_arrays`` each trajectory is a float64 array (points, 6) of :data:`PLAN_FIELDS`
    instead of a message of 64 point objects, and topics in ``skip`` are not read: a
    20 s bag of 4 cameras then holds about 4 MB instead of about 80 MB.
    """
    store = make_typestore()
    odom, images, infos, trajs, reasons, obstacles = [], {}, {}, {}, {}, {}
    navigation = ""
    with Reader(Path(path)) as reader:
        for conn, ns, raw in reader.messages():
            topic, msgtype = conn.topic, conn.msgtype
            if topic in skip:
                continue
            msg = store.deserialize_cdr(raw, msgtype)
            if topic == ODOM_TOPIC:
                p = msg.pose.pose
                odom.append((ns, p.position.x, p.position.y, _yaw(p.orientation),
                             msg.twist.twist.linear.x))
            elif topic.startswith("/sensing/camera/") and topic.endswith("/camera_info"):
                infos[topic.split("/")[3]] = msg
            elif topic.startswith("/sensing/camera/"):
                img = EncodedImage.from_msg(msg, msgtype)
                images.setdefault(topic.split("/")[3], []).append(
                    (ns, img.decode() if decode_images else img))
            elif topic == TRAJECTORY_TOPIC:
                trajs[ns] = (np.array([[getattr(p, f) for f in PLAN_FIELDS] for p in msg.points],
                                      np.float64).reshape(-1, len(PLAN_FIELDS))
                             if plans_as_arrays else msg)
            elif topic == REASONING_TOPIC:
                reasons[ns] = msg
            elif topic == OBSTACLE_TOPIC:
                obstacles[ns] = msg
            elif topic == NAVIGATION_TOPIC:
                navigation = str(msg.data)
    if not odom:
        raise ValueError(f"{path}: no {ODOM_TOPIC} messages")
    odom.sort()
    arr = np.array(odom, dtype=np.float64)
    for cam, lst in images.items():
        lst.sort(key=lambda x: x[0])
        if not decode_images:
            images[cam] = _pack(lst)
    return BagContents(arr[:, 0].astype(np.int64), arr[:, 1:], images, infos, trajs, reasons,
                       obstacles, navigation)


def odom_in_ego_frame(contents: BagContents, index: int, first: int, last: int) -> np.ndarray:
    """Odometry poses ``first..last`` (inclusive) in the ego frame at ``index``, (N, 3)."""
    xyh = contents.odom_xyhv[first: last + 1, :3]
    return to_ego_frame(xyh, contents.odom_xyhv[index, :3])
