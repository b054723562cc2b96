"""Training view over bags (:class:`BagDataset`) and a fast npy cache (:class:`CachedDataset`).

A sample is a :class:`~alpamayo_ros.sample.DrivingSample` at a stamp of the bag: the
last ``history_frames`` camera frames of every camera (oldest first), 16 ego poses of
history (1.6 s), 64 future waypoints at 10 Hz (6.4 s) from the odometry, the unicycle
controls of the reference trajectory (fitted to the poses,
:mod:`alpamayo_ros.data.controls`), the bag's navigation command and, at keyframes, the
CoC label. By default the samples are the labelled keyframes; ``stride`` adds unlabelled
samples every N steps. Images stay jpeg bytes in memory until a sample needs them (a
bag holds a few MB, not the ~75 MB of its decoded frames).

The cache is a directory of shards, each a set of ``.npy`` arrays (memory-mapped on
load, no pickle) plus ``meta.json`` (cameras, labels as JSON). Public API:
``BagDataset(paths)``, ``write_cache(samples, out_dir)``, ``load_cache(out_dir)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from alpamayo_ros.data.bag import (
    OBSTACLE_TOPIC,
    PLAN_FIELDS,
    RIG_FILE,
    BagContents,
    odom_in_ego_frame,
    read_bag,
    read_rig_json,
)
from alpamayo_ros.data.controls import plan_controls
from alpamayo_ros.sample import (
    EGO_HISTORY_STEPS,
    FUTURE_STEPS,
    CameraGeometry,
    CocLabel,
    CriticalComponentLabel,
    DrivingSample,
)

CACHE_VERSION = 1
DEFAULT_HISTORY_FRAMES = 2  # what the tiny and default presets read (VisionConfig.num_frames)
_ARRAYS = ("images", "ego_history", "future_xyh", "future_controls", "speed_mps", "stamp_ns")


def _camera_geometry(name: str, info) -> CameraGeometry:
    k = np.asarray(info.k, float).reshape(3, 3)
    return CameraGeometry(name, int(info.width), int(info.height), k, np.eye(4))


class BagDataset(Sequence):
    """DrivingSamples read from one or more bags written by ``alpamayo generate``.

    ``bags`` hold the bags' contents with images still encoded, plans as arrays and
    no obstacle messages (``read_bag(decode_images=False, plans_as_arrays=True)``).
    """

    def __init__(self, paths: str | Path | Iterable[str | Path],
                 history_frames: int = DEFAULT_HISTORY_FRAMES,
                 cameras: list[str] | None = None, stride: int = 0,
                 camera_geometry: dict[str, CameraGeometry] | None = None) -> None:
        if history_frames < 1:
            raise ValueError(f"history_frames must be >= 1, got {history_frames}")
        if stride < 0:
            raise ValueError(f"stride must be >= 0, got {stride}")
        if isinstance(paths, (str, Path)):
            paths = [paths]
        self.history_frames = history_frames
        paths = [Path(p) for p in paths]
        # Only what samples read: images still encoded, plans as arrays, no obstacles.
        self.bags: list[BagContents] = [
            read_bag(p, decode_images=False, skip={OBSTACLE_TOPIC}, plans_as_arrays=True)
            for p in paths]
        # Image stamps per bag and camera, to find a sample's frames without decoding.
        self._stamps = [{n: np.array([t for t, _ in lst], np.int64)
                         for n, lst in bag.images.items()} for bag in self.bags]
        self.camera_geometry = dict(camera_geometry or {})
        for p in paths:
            if not camera_geometry and (p / RIG_FILE).exists():
                self.camera_geometry.update(read_rig_json(p / RIG_FILE))
        self.index: list[tuple[int, int]] = []  # (bag, odometry index)
        for b, bag in enumerate(self.bags):
            names = cameras or sorted(bag.images)
            missing = [n for n in names if n not in bag.images]
            if missing:
                raise ValueError(f"cameras {missing} not in bag {b} ({sorted(bag.images)})")
            stamps = {int(ns): i for i, ns in enumerate(bag.odom_ns)}
            chosen = {stamps[ns] for ns in bag.reasoning if ns in stamps}
            if stride:
                chosen |= set(range(0, len(bag.odom_ns), stride))
            for i in sorted(chosen):
                if self._valid(b, i, names):
                    self.index.append((b, i))
        self.cameras = cameras

    def _frames_upto(self, b: int, camera: str, ns: int) -> int:
        """How many images of ``camera`` in bag ``b`` are stamped at or before ``ns``."""
        return int(np.searchsorted(self._stamps[b][camera], ns, side="right"))

    def _valid(self, b: int, i: int, names: list[str]) -> bool:
        bag = self.bags[b]
        if i < EGO_HISTORY_STEPS - 1 or i + FUTURE_STEPS >= len(bag.odom_ns):
            return False
        ns = int(bag.odom_ns[i])
        return all(self._frames_upto(b, n, ns) >= self.history_frames for n in names)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> DrivingSample:  # type: ignore[override]
        if not -len(self) <= item < len(self):
            raise IndexError(item)
        b, i = self.index[item]
        bag = self.bags[b]
        names = self.cameras or sorted(bag.images)
        ns = int(bag.odom_ns[i])
        frames = []
        for n in names:  # decode only this sample's frames
            last = self._frames_upto(b, n, ns)
            frames.append(np.stack([bag.image(n, k)
                                    for k in range(last - self.history_frames, last)]))
        images = np.stack(frames, axis=1)  # (F, C, H, W, 3)
        hist = odom_in_ego_frame(bag, i, i - EGO_HISTORY_STEPS + 1, i)
        history = np.concatenate(
            [hist, bag.odom_xyhv[i - EGO_HISTORY_STEPS + 1: i + 1, 3:4]], axis=1)
        future = odom_in_ego_frame(bag, i, i + 1, i + FUTURE_STEPS)
        plan = bag.trajectories.get(ns)
        if plan is not None and len(plan) >= FUTURE_STEPS:
            controls = plan[:FUTURE_STEPS, [PLAN_FIELDS.index("acceleration"),
                                            PLAN_FIELDS.index("curvature")]]
        else:  # a bag without reference trajectories: fit the odometry the same way
            fit = plan_controls(future, float(bag.odom_xyhv[i, 3]))
            controls = np.stack([fit.acceleration_mps2, fit.curvature_per_m], axis=1)
        reasoning = bag.reasoning.get(ns)
        coc = None
        if reasoning is not None:
            coc = CocLabel(
                reasoning.longitudinal_decision, reasoning.lateral_decision,
                [CriticalComponentLabel(int(c.type), int(c.uncertainty), c.id, c.description,
                                        (c.position.x, c.position.y, c.position.z))
                 for c in reasoning.critical_components],
                reasoning.text, reasoning.longitudinal_meta_action,
                reasoning.lateral_meta_action)
        cams = [self.camera_geometry.get(n) or _camera_geometry(n, bag.camera_info[n])
                for n in names]
        return DrivingSample(
            stamp_ns=ns, images=images, cameras=cams,
            ego_history=history.astype(np.float32), future_xyh=future.astype(np.float32),
            future_controls=controls.astype(np.float32), speed_mps=float(bag.odom_xyhv[i, 3]),
            coc=coc, navigation=bag.navigation, meta={"bag": b, "odom_index": i, "index": i})


# --------------------------------------------------------------------------- cache
def _label_json(coc: CocLabel | None) -> dict | None:
    if coc is None:
        return None
    d = asdict(coc)
    for c in d["components"]:
        c["position_m"] = [None if not math.isfinite(v) else v for v in c["position_m"]]
    return d


def _label_from_json(d: dict | None) -> CocLabel | None:
    if d is None:
        return None
    comps = [CriticalComponentLabel(
        c["type"], c["uncertainty"], c["id"], c["description"],
        tuple(float("nan") if v is None else v for v in c["position_m"]))
        for c in d["components"]]
    return CocLabel(d["longitudinal_decision"], d["lateral_decision"], comps, d["text"],
                    d["longitudinal_meta_action"], d["lateral_meta_action"])


def write_cache(samples: Iterable[DrivingSample], out_dir: str | Path,
                shard_size: int = 256) -> Path:
    """Write samples to ``out_dir/shard_XXXXX/`` npy shards; returns ``out_dir``."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf: list[DrivingSample] = []
    shard = 0

    def flush() -> None:
        nonlocal shard
        if not buf:
            return
        d = out / f"shard_{shard:05d}"
        d.mkdir()
        shapes = {s.images.shape for s in buf}
        if len(shapes) != 1:
            raise ValueError(f"samples in a shard must share image shapes, got {shapes}")
        np.save(d / "images.npy", np.stack([s.images for s in buf]))
        np.save(d / "ego_history.npy", np.stack([s.ego_history for s in buf]))
        np.save(d / "future_xyh.npy", np.stack([s.future_xyh for s in buf]))
        np.save(d / "future_controls.npy", np.stack([s.future_controls for s in buf]))
        np.save(d / "speed_mps.npy", np.array([s.speed_mps for s in buf], np.float32))
        np.save(d / "stamp_ns.npy", np.array([s.stamp_ns for s in buf], np.int64))
        meta = {
            "version": CACHE_VERSION,
            "cameras": [{"name": c.name, "width_px": c.width_px, "height_px": c.height_px,
                         "intrinsics": np.asarray(c.intrinsics).tolist(),
                         "camera_to_ego": np.asarray(c.camera_to_ego).tolist()}
                        for c in buf[0].cameras],
            "labels": [_label_json(s.coc) for s in buf],
            "navigation": [s.navigation for s in buf],
            "meta": [{k: v for k, v in s.meta.items() if isinstance(v, (int, float, str))}
                     for s in buf],
        }
        (d / "meta.json").write_text(json.dumps(meta))
        shard += 1
        buf.clear()

    for s in samples:
        buf.append(s)
        if len(buf) >= shard_size:
            flush()
    flush()
    return out


class CachedDataset(Sequence):
    """Memory-mapped samples from :func:`write_cache`."""

    def __init__(self, cache_dir: str | Path) -> None:
        root = Path(cache_dir)
        shards = sorted(root.glob("shard_*"))
        if not shards:
            raise FileNotFoundError(f"no shards in {root}")
        self.shards = []
        for d in shards:
            meta = json.loads((d / "meta.json").read_text())
            if meta.get("version") != CACHE_VERSION:
                raise ValueError(f"{d}: cache version {meta.get('version')} != {CACHE_VERSION}")
            arrays = {name: np.load(d / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                      for name in _ARRAYS}
            cams = [CameraGeometry(c["name"], c["width_px"], c["height_px"],
                                   np.array(c["intrinsics"]), np.array(c["camera_to_ego"]))
                    for c in meta["cameras"]]
            self.shards.append((arrays, meta, cams))
        self.offsets = np.cumsum([0] + [len(a["stamp_ns"]) for a, _, _ in self.shards])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, item: int) -> DrivingSample:  # type: ignore[override]
        if not -len(self) <= item < len(self):
            raise IndexError(item)
        item %= len(self)
        s = int(np.searchsorted(self.offsets, item, side="right") - 1)
        j = item - int(self.offsets[s])
        arrays, meta, cams = self.shards[s]
        return DrivingSample(
            stamp_ns=int(arrays["stamp_ns"][j]), images=np.asarray(arrays["images"][j]),
            cameras=cams, ego_history=np.asarray(arrays["ego_history"][j]),
            future_xyh=np.asarray(arrays["future_xyh"][j]),
            future_controls=np.asarray(arrays["future_controls"][j]),
            speed_mps=float(arrays["speed_mps"][j]), coc=_label_from_json(meta["labels"][j]),
            navigation=meta["navigation"][j], meta=dict(meta["meta"][j]))

    def arrays(self, name: str) -> list[np.ndarray]:
        """The memory-mapped array ``name`` of every shard (for batched training loaders)."""
        if name not in _ARRAYS:
            raise ValueError(f"name must be one of {_ARRAYS}, got {name!r}")
        return [a[name] for a, _, _ in self.shards]


def load_cache(cache_dir: str | Path) -> CachedDataset:
    """Open a cache written by :func:`write_cache`."""
    return CachedDataset(cache_dir)
