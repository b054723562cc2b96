"""Episode shards: a parallel, resumable builder and a training loader that reads rows.

Storage (one directory per episode, ``<root>/<split>/<family>_<seed:05d>/``):

- ``frames.npy`` uint8 ``(T, C, H, W, 3)``: every camera frame from the oldest history
  frame of the first sample (``meta["first_frame"]``) to the last sample, rendered once with
  :class:`~alpamayo_ros.data.render.SceneRenderer` at the rig's resolution and resized to
  the spec's stored size with the antialiased bilinear interpolation the model's
  Processor uses (so the Processor does not resize again);
- per-sample arrays, one row per sample (every ``stride`` steps that have a full history
  and future window): ``index`` (frame index), ``stamp_ns``, ``ego_history`` (S, 16, 4),
  ``future_xyh`` (S, 64, 3), ``future_controls`` (S, 64, 2) (unicycle fit of the plan,
  :mod:`alpamayo_ros.data.controls`), ``speed`` (S,), ``perception`` (S, D) and
  ``perception_mask`` (:mod:`alpamayo_ros.data.perception_targets`), ``decision_ids``
  (S, 2) (:func:`alpamayo_ros.taxonomy.decision_class_ids`) and ``keyframe`` (S,);
- ``frames_signal_swap.npy`` (only with :attr:`DatasetSpec.signal_counterfactuals`, only
  episodes with traffic signals): ``frames.npy`` drawn again with every signal's red and
  green exchanged (the rest of each frame identical);
- ``labels.jsonl``: one CoC label per sample and line (JSON, ``null`` where the step has
  no text, :mod:`alpamayo_ros.data.labels`);
- ``meta.json``: spec and episode hashes, family, seed, navigation text, camera geometry
  (intrinsics scaled to the stored size) and why a step has no text.

An episode is written to a temporary directory and renamed into place, so a directory
with ``meta.json`` is complete; one built with the same :meth:`DatasetSpec.episode_hash`
is skipped (rebuilds resume). :func:`build_dataset` runs episodes in worker processes and
can be sharded across machines by seed range.

:class:`EpisodeDataset` serves :class:`~alpamayo_ros.sample.DrivingSample` objects by
reading only a sample's own rows from the files (positioned reads at offsets taken from
the ``.npy`` headers, nothing kept open or mapped: memory does not grow with the dataset
or with iteration, and it works in DataLoader worker processes) and cheap accessors that
do not touch images (decision ids, keyframes, controls, texts).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alpamayo_ros.data.spec import DATASET_FORMAT_VERSION, SPLITS, DatasetSpec
from alpamayo_ros.sample import CameraGeometry, CocLabel, DrivingSample
from alpamayo_ros.taxonomy import LATERAL_CLASSES, LONGITUDINAL_CLASSES

__all__ = ["DatasetSpec", "EpisodeDataset", "build_dataset", "build_episode",
           "class_balanced_weights", "dataset_info", "episode_dir"]

META_FILE = "meta.json"
LABELS_FILE = "labels.jsonl"
SPEC_FILE = "spec.json"
SIGNAL_SWAP_FRAMES = "frames_signal_swap"
SAMPLE_ARRAYS = ("index", "stamp_ns", "ego_history", "future_xyh", "future_controls",
                 "speed", "perception", "perception_mask", "decision_ids", "keyframe")
RENDER_BATCH = 16  # frames resized per interpolate call
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def episode_dir(root: str | Path, split: str, family: str, seed: int) -> Path:
    """Directory of one episode."""
    return Path(root) / split / f"{family}_{seed:05d}"


def _read_meta(path: Path) -> dict | None:
    try:
        return json.loads((path / META_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# --------------------------------------------------------------------------- building
def _resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, height, width, 3) like the model's Processor resizes."""
    import torch
    import torch.nn.functional as F

    if images.shape[1:3] == (height, width):
        return images
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True,
                      align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _stored_geometry(geometry: CameraGeometry, height: int, width: int) -> dict:
    k = np.asarray(geometry.intrinsics, dtype=np.float64).copy()
    k[0] *= width / geometry.width_px
    k[1] *= height / geometry.height_px
    return {"name": geometry.name, "width_px": width, "height_px": height,
            "intrinsics": k.tolist(),
            "camera_to_ego": np.asarray(geometry.camera_to_ego, dtype=np.float64).tolist()}


def build_episode(spec: DatasetSpec, root: str | Path, split: str, family: str,
                  seed: int) -> dict:
    """Build (or skip, when already built with this spec) one episode; returns a summary."""
    from alpamayo_ros.data.cameras import make_rig
    from alpamayo_ros.data.coc import ego_future, ego_history
    from alpamayo_ros.data.controls import episode_plan_controls
    from alpamayo_ros.data.dataset import _label_json
    from alpamayo_ros.data.labels import label_steps
    from alpamayo_ros.data.perception_targets import episode_perception_targets
    from alpamayo_ros.data.recovery import draw_disturbance
    from alpamayo_ros.data.render import SceneRenderer
    from alpamayo_ros.data.scenarios import make_scenario, simulate
    from alpamayo_ros.taxonomy import decision_class_ids

    t0 = time.perf_counter()
    out = episode_dir(root, split, family, seed)
    ep_hash = spec.episode_hash(split)
    skipped = _already_built(out, ep_hash, split, family, seed)
    if skipped is not None:
        return skipped

    disturbance = (draw_disturbance(spec.recovery_config(), family, seed)
                   if split == "train" else None)
    episode = simulate(make_scenario(family, seed, spec.duration_s), disturbance)
    steps = label_steps(episode)[::spec.stride]
    if not steps:
        raise ValueError(f"{family}/{seed}: no step has a full history and future window")
    indices = np.array([s.index for s in steps], dtype=np.int64)
    frames = episode.frames
    _, plans = episode_plan_controls(episode, indices=indices)
    perception, perception_mask = episode_perception_targets(episode, indices)
    arrays = {
        "index": indices.astype(np.int32),
        "stamp_ns": np.array([int(round(frames[i].time_s * 1e9)) for i in indices], np.int64),
        "ego_history": np.stack([ego_history(episode, int(i)) for i in indices]
                                ).astype(np.float32),
        "future_xyh": np.stack([ego_future(episode, int(i)) for i in indices]
                               ).astype(np.float32),
        "future_controls": np.stack([plans.acceleration_mps2, plans.curvature_per_m],
                                    axis=-1).astype(np.float32),
        "speed": np.array([frames[i].ego.v_mps for i in indices], np.float32),
        "perception": perception.astype(np.float32),
        "perception_mask": perception_mask.astype(bool),
        "decision_ids": np.array([decision_class_ids(*s.decisions) for s in steps], np.int16),
        "keyframe": np.array([s.keyframe for s in steps], bool),
    }

    rig = make_rig(spec.rig)
    by_name = {c.name: c for c in rig.cameras}
    cams = [by_name[n] for n in spec.camera_names()]
    h, w = spec.image_height_px, spec.image_width_px
    first_frame = max(0, int(indices[0]) - spec.history_frames + 1)
    num_frames = int(indices[-1]) + 1 - first_frame

    def render_video(renderer: SceneRenderer) -> np.ndarray:
        video = np.empty((num_frames, len(cams), h, w, 3), np.uint8)
        for lo in range(0, num_frames, RENDER_BATCH):
            hi = min(num_frames, lo + RENDER_BATCH)
            shots = np.stack([np.stack(renderer.render(first_frame + k, cams))
                              for k in range(lo, hi)])
            video[lo:hi] = _resize(shots.reshape(-1, *shots.shape[2:]), h, w).reshape(
                hi - lo, len(cams), h, w, 3)
        return video

    video = render_video(SceneRenderer(episode))
    swapped = (render_video(SceneRenderer(episode, swap_signal_colours=True))
               if spec.signal_counterfactuals and episode.world.lights else None)

    meta = {
        "format": DATASET_FORMAT_VERSION, "episode_hash": ep_hash,
        "spec_hash": spec.content_hash(), "split": split, "family": family, "seed": seed,
        "navigation": episode.navigation,
        "first_frame": first_frame, "num_frames": num_frames, "samples": len(steps),
        "keyframes": int(arrays["keyframe"].sum()),
        "history_frames": spec.history_frames,
        "cameras": [_stored_geometry(c.geometry(), h, w) for c in cams],
        "no_text_reasons": [s.reason for s in steps],
        "disturbance": None if disturbance is None else dataclasses.asdict(disturbance),
        "first_sample_index": episode.first_sample_index,
        "signal_swap": swapped is not None,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    np.save(tmp / "frames.npy", video)
    if swapped is not None:
        np.save(tmp / f"{SIGNAL_SWAP_FRAMES}.npy", swapped)
    for name, arr in arrays.items():
        np.save(tmp / f"{name}.npy", arr)
    (tmp / LABELS_FILE).write_text("".join(json.dumps(_label_json(s.coc), sort_keys=True)
                                           + "\n" for s in steps))
    (tmp / META_FILE).write_text(json.dumps(meta, sort_keys=True))
    if out.exists() and _already_built(out, ep_hash, split, family, seed) is None:
        shutil.rmtree(out, ignore_errors=True)  # stale: built with other settings
    try:
        os.replace(tmp, out)
    except OSError:  # another process (a shard, a DDP rank) has just built it
        shutil.rmtree(tmp, ignore_errors=True)
        if _already_built(out, ep_hash, split, family, seed) is None:
            raise
    return {"split": split, "family": family, "seed": seed, "skipped": False,
            "samples": len(steps), "keyframes": meta["keyframes"], "bytes": _dir_bytes(out),
            "seconds": round(time.perf_counter() - t0, 3)}


def _already_built(out: Path, ep_hash: str, split: str, family: str, seed: int
                   ) -> dict | None:
    """The summary of an episode already built with ``ep_hash``, else None."""
    meta = _read_meta(out)
    if meta is None or meta.get("episode_hash") != ep_hash:
        return None
    return {"split": split, "family": family, "seed": seed, "skipped": True,
            "samples": meta["samples"], "keyframes": meta["keyframes"],
            "bytes": _dir_bytes(out), "seconds": 0.0}


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _build_job(job: tuple) -> dict:
    spec_dict, root, split, family, seed = job
    return build_episode(DatasetSpec.from_dict(spec_dict), root, split, family, seed)


def build_dataset(spec: DatasetSpec, root: str | Path,
                  splits: Iterable[str] = SPLITS, seeds: tuple[int, int] | None = None,
                  workers: int = 1, progress: bool = False,
                  on_episode: Callable[[dict], None] | None = None) -> dict:
    """Build the episodes of ``splits`` (optionally only seeds in ``[A, B)``) under ``root``.

    Episodes already built with the same :meth:`DatasetSpec.episode_hash` are skipped;
    the others are built in ``workers`` spawned processes (single-threaded BLAS), so a
    script calling this needs the ``if __name__ == "__main__":`` guard. Returns a
    JSON-able summary: episodes, built, skipped, samples, keyframes, seconds, bytes.
    """
    splits = list(splits)
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if seeds is not None:
        lo, hi = (int(v) for v in seeds)
        if lo > hi:
            raise ValueError(f"seeds must be A:B with A <= B, got {lo}:{hi}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / SPEC_FILE).write_text(json.dumps(
        {"spec": spec.to_dict(), "content_hash": spec.content_hash(),
         "episode_hash": spec.episode_hash(), "train_episode_hash": spec.episode_hash("train")},
        indent=1, sort_keys=True))
    jobs = []
    skipped = []
    for split in splits:
        ep_hash = spec.episode_hash(split)
        for family, seed in spec.episodes(split, seeds):
            done_before = _already_built(episode_dir(root, split, family, seed), ep_hash,
                                         split, family, seed)
            if done_before is not None:
                skipped.append(done_before)
            else:
                jobs.append((spec.to_dict(), str(root), split, family, seed))
    t0 = time.perf_counter()
    results = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs) + len(skipped), unit="episode", desc="dataset build")

    def done(r: dict) -> None:
        results.append(r)
        if on_episode is not None:
            on_episode(r)
        if bar is not None:
            bar.set_postfix_str(f"{r['split']}/{r['family']}_{r['seed']:05d}")
            bar.update(1)

    for r in skipped:
        done(r)
    if jobs:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # Fresh processes with single-threaded BLAS: the batched plan fits are ~10x
        # slower when every process spreads them over all cores.
        saved = {k: os.environ.get(k) for k in _THREAD_VARS}
        os.environ.update({k: "1" for k in _THREAD_VARS})
        try:
            with ProcessPoolExecutor(min(workers, len(jobs)),
                                     mp_context=mp.get_context("spawn"),
                                     initializer=_worker_init) as pool:
                for r in pool.map(_build_job, jobs):
                    done(r)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    if bar is not None:
        bar.close()
    built = [r for r in results if not r["skipped"]]
    return {
        "root": str(root), "spec_hash": spec.content_hash(), "splits": splits,
        "episodes": len(results), "built": len(built), "skipped": len(results) - len(built),
        "samples": sum(r["samples"] for r in results),
        "keyframes": sum(r["keyframes"] for r in results),
        "seconds": round(time.perf_counter() - t0, 2),
        "seconds_per_built_episode": round(sum(r["seconds"] for r in built)
                                           / max(len(built), 1), 3),
        "bytes": sum(r["bytes"] for r in results),
    }


# --------------------------------------------------------------------------- loading
def _episode_dirs(root: Path, split: str) -> list[Path]:
    base = root / split
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / META_FILE).exists())


@dataclass
class _Layout:
    """Where an episode's rows live: ``.npy`` data offsets, label line offsets, cameras."""

    arrays: dict  # name -> (data offset, dtype, row shape, row bytes, rows)
    label_offsets: np.ndarray  # int64 (samples + 1,) byte offsets of labels.jsonl lines
    cameras: list[CameraGeometry]
    navigation: str


def _npy_layout(path: Path) -> tuple[int, np.dtype, tuple, int, int]:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
        offset = f.tell()
    if fortran or dtype.hasobject or not shape:
        raise ValueError(f"{path}: expected a C-ordered plain array, got {dtype} {shape}")
    row_shape = tuple(shape[1:])
    return offset, dtype, row_shape, int(dtype.itemsize * np.prod(row_shape, dtype=np.int64)), \
        int(shape[0])


def _label_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


class EpisodeDataset(Sequence):
    """The samples of one split of a built dataset, as DrivingSamples.

    A sample reads only its own rows: the ``history_frames`` video frames and one row of
    each per-sample array (positioned reads at offsets taken once per episode from the
    ``.npy`` headers) and one line of ``labels.jsonl``. Nothing is kept open or mapped,
    so memory does not grow with the dataset or with iteration (the page cache does the
    caching), and it works in DataLoader worker processes (only the index is pickled).

    ``signal_counterfactuals=True`` appends, after the ``N`` samples of the split, one
    perception-only sample for every sample whose signal ahead is red or green in an
    episode built with ``frames_signal_swap.npy``: the swapped frames, the perception
    targets with red and green exchanged, no text, no decision, ``perception_only`` set
    (its trajectory is not what the frames show, so only the perception head learns from
    it). :meth:`perception_only_mask` says which indices they are.
    """

    def __init__(self, root: str | Path, split: str, signal_counterfactuals: bool = False
                 ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.episodes: list[dict] = []  # dir, family, seed, samples, history_frames, ...
        for d in _episode_dirs(self.root, split):
            meta = _read_meta(d)
            if meta is None or meta.get("format") != DATASET_FORMAT_VERSION:
                raise ValueError(f"{d}: not an episode of dataset format "
                                 f"{DATASET_FORMAT_VERSION}")
            self.episodes.append({"dir": str(d), "family": meta["family"],
                                  "seed": int(meta["seed"]), "samples": int(meta["samples"]),
                                  "history_frames": int(meta["history_frames"]),
                                  "first_frame": int(meta["first_frame"]),
                                  "signal_swap": bool(meta.get("signal_swap", False))})
        if not self.episodes:
            raise FileNotFoundError(f"no episodes in {self.root / split}")
        self.offsets = np.cumsum([0] + [e["samples"] for e in self.episodes])
        self._layouts: dict[int, _Layout] = {}  # a few KB per episode touched
        # (episode, row) of each signal counterfactual, served at indices N, N+1, ...
        self.counterfactuals = (self._signal_counterfactual_rows() if signal_counterfactuals
                                else np.zeros((0, 2), np.int64))

    def _signal_counterfactual_rows(self) -> np.ndarray:
        from alpamayo_ros.perception import PERCEPTION_INDEX

        red, green = PERCEPTION_INDEX["light_red"], PERCEPTION_INDEX["light_green"]
        rows = []
        for e, info in enumerate(self.episodes):
            if not info["signal_swap"]:
                continue
            d = Path(info["dir"])
            target = np.load(d / "perception.npy", allow_pickle=False)
            known = np.load(d / "perception_mask.npy", allow_pickle=False)[:, red]
            coloured = known & ((target[:, red] > 0.5) | (target[:, green] > 0.5))
            rows.extend((e, int(j)) for j in np.flatnonzero(coloured))
        return np.array(rows, np.int64).reshape(-1, 2)

    @property
    def base_size(self) -> int:
        """Samples of the split itself (the counterfactuals, if any, come after them)."""
        return int(self.offsets[-1])

    def __len__(self) -> int:
        return self.base_size + len(self.counterfactuals)

    def _layout(self, e: int) -> _Layout:
        layout = self._layouts.get(e)
        if layout is None:
            d = Path(self.episodes[e]["dir"])
            meta = _read_meta(d)
            names = ("frames", *SAMPLE_ARRAYS) + ((SIGNAL_SWAP_FRAMES,)
                                                  if self.episodes[e]["signal_swap"] else ())
            arrays = {name: _npy_layout(d / f"{name}.npy") for name in names}
            lengths = [len(line) + 1 for line in _label_lines(d / LABELS_FILE)]
            cams = [CameraGeometry(c["name"], c["width_px"], c["height_px"],
                                   np.array(c["intrinsics"]), np.array(c["camera_to_ego"]))
                    for c in meta["cameras"]]
            layout = _Layout(arrays, np.concatenate([[0], np.cumsum(lengths)]), cams,
                             str(meta.get("navigation", "")))
            self._layouts[e] = layout
        return layout

    def _rows(self, e: int, name: str, lo: int, hi: int) -> np.ndarray:
        """Rows ``[lo, hi)`` of array ``name`` of episode ``e`` (a fresh, writable array)."""
        offset, dtype, row_shape, row_bytes, rows = self._layout(e).arrays[name]
        if not 0 <= lo <= hi <= rows:
            raise IndexError(f"rows [{lo}, {hi}) of {name} with {rows} rows")
        out = np.empty((hi - lo, *row_shape), dtype)
        with open(Path(self.episodes[e]["dir"]) / f"{name}.npy", "rb") as f:
            f.seek(offset + lo * row_bytes)
            if f.readinto(memoryview(out).cast("B")) != out.nbytes:
                raise OSError(f"{self.episodes[e]['dir']}/{name}.npy is truncated")
        return out

    def _label(self, e: int, j: int) -> dict | None:
        starts = self._layout(e).label_offsets
        with open(Path(self.episodes[e]["dir"]) / LABELS_FILE, "rb") as f:
            f.seek(int(starts[j]))
            return json.loads(f.read(int(starts[j + 1] - starts[j])))

    def locate(self, item: int) -> tuple[int, int]:
        """``(episode number, sample within it)`` of a dataset index.

        A signal counterfactual's index locates the sample it was drawn from.
        """
        if not -len(self) <= item < len(self):
            raise IndexError(item)
        item %= len(self)
        if item >= self.base_size:
            e, j = self.counterfactuals[item - self.base_size]
            return int(e), int(j)
        e = int(np.searchsorted(self.offsets, item, side="right") - 1)
        return e, item - int(self.offsets[e])

    def __getitem__(self, item: int) -> DrivingSample:  # type: ignore[override]
        from alpamayo_ros.data.dataset import _label_from_json

        e, j = self.locate(item)
        counterfactual = item % len(self) >= self.base_size
        info, layout = self.episodes[e], self._layout(e)
        row = {name: self._rows(e, name, j, j + 1)[0] for name in SAMPLE_ARRAYS}
        i = int(row["index"])
        k = i - info["first_frame"]  # row of frame i in frames.npy
        images = self._rows(e, SIGNAL_SWAP_FRAMES if counterfactual else "frames",
                            max(0, k - info["history_frames"] + 1), k + 1)
        meta = {"family": info["family"], "seed": info["seed"], "index": i,
                "split": self.split}
        if counterfactual:
            from alpamayo_ros.perception import PERCEPTION_INDEX

            red, green = PERCEPTION_INDEX["light_red"], PERCEPTION_INDEX["light_green"]
            perception = row["perception"]
            perception[[red, green]] = perception[[green, red]]
            return DrivingSample(
                stamp_ns=int(row["stamp_ns"]), images=images, cameras=layout.cameras,
                ego_history=row["ego_history"], future_xyh=row["future_xyh"],
                future_controls=row["future_controls"], speed_mps=float(row["speed"]),
                navigation=layout.navigation, meta={**meta, "signal_swap": True},
                perception=perception, perception_mask=row["perception_mask"],
                perception_only=True)
        lon, lat = (int(v) for v in row["decision_ids"])
        coc: CocLabel | None = _label_from_json(self._label(e, j))
        return DrivingSample(
            stamp_ns=int(row["stamp_ns"]), images=images, cameras=layout.cameras,
            ego_history=row["ego_history"], future_xyh=row["future_xyh"],
            future_controls=row["future_controls"], speed_mps=float(row["speed"]), coc=coc,
            navigation=layout.navigation, meta=meta, keyframe=bool(row["keyframe"]),
            decisions=(LONGITUDINAL_CLASSES[lon], LATERAL_CLASSES[lat]),
            perception=row["perception"], perception_mask=row["perception_mask"])

    # ------------------------------------------------------------------ cheap accessors
    def _concat(self, name: str) -> np.ndarray:
        return np.concatenate([np.load(Path(e["dir"]) / f"{name}.npy", allow_pickle=False)
                               for e in self.episodes])

    def _labels(self) -> list[dict | None]:
        return [json.loads(line) for e in self.episodes
                for line in _label_lines(Path(e["dir"]) / LABELS_FILE)]

    def decision_ids(self) -> np.ndarray:
        """Class ids, int64 ``(len, 2)``: (lon, lat); -1 for the signal counterfactuals."""
        ids = self._concat("decision_ids").astype(np.int64)
        return np.concatenate([ids, np.full((len(self.counterfactuals), 2), -1, np.int64)])

    def keyframe_mask(self) -> np.ndarray:
        """Keyframe flags, bool ``(len,)``: CoC keyframes (decision changes)."""
        return np.concatenate([self._concat("keyframe").astype(bool),
                               np.zeros(len(self.counterfactuals), bool)])

    def perception_only_mask(self) -> np.ndarray:
        """Bool ``(len,)``: the perception-only samples (the signal counterfactuals)."""
        return np.arange(len(self)) >= self.base_size

    def controls(self) -> np.ndarray:
        """Future controls, float32 ``(len, 64, 2)``: (acceleration, curvature) per step."""
        c = self._concat("future_controls")
        if not len(self.counterfactuals):
            return c
        rows = self.offsets[self.counterfactuals[:, 0]] + self.counterfactuals[:, 1]
        return np.concatenate([c, c[rows]])

    def control_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std ``(2,)`` of the split's future controls.

        The counterfactuals, copies of some of them, are left out.
        """
        c = self._concat("future_controls").reshape(-1, 2).astype(np.float64)
        return c.mean(axis=0), c.std(axis=0)

    def has_text(self) -> np.ndarray:
        """Bool ``(len,)``: samples with a CoC text.

        False where a cause was unobservable, and for the signal counterfactuals.
        """
        return np.array([lab is not None for lab in self._labels()]
                        + [False] * len(self.counterfactuals), bool)

    def texts(self) -> list[str]:
        """The CoC texts of every sample that has one (tokenizer corpus)."""
        return [lab["text"] for lab in self._labels() if lab is not None]

    def navigation_texts(self) -> list[str]:
        """The non-empty navigation commands, one per episode."""
        out = [_read_meta(Path(e["dir"]))["navigation"] for e in self.episodes]
        return [t for t in out if t]


def class_balanced_weights(decision_ids: np.ndarray) -> np.ndarray:
    """Per-sample weights that even out the (lon) and (lat) decision classes.

    Each channel contributes ``count(class) ** -0.5`` (inverse square-root frequency; id
    -1, unknown, is a class of its own) and a sample's weight is the product over the two
    channels, normalised to mean 1 (for ``torch.utils.data.WeightedRandomSampler``).
    """
    ids = np.asarray(decision_ids)
    if ids.ndim != 2 or ids.shape[1] != 2:
        raise ValueError(f"decision_ids must be (N, 2), got shape {ids.shape}")
    if len(ids) == 0:
        return np.zeros(0)
    w = np.ones(len(ids))
    for c in range(2):
        _, inverse, counts = np.unique(ids[:, c], return_inverse=True, return_counts=True)
        w *= counts[inverse.reshape(-1)].astype(np.float64) ** -0.5
    return w / w.mean()


# --------------------------------------------------------------------------- summary
def dataset_info(root: str | Path) -> dict:
    """Per split: episodes, samples, keyframes, samples with text, decision histograms."""
    root = Path(root)
    out: dict = {"root": str(root)}
    spec_file = root / SPEC_FILE
    if spec_file.exists():
        out["spec_hash"] = json.loads(spec_file.read_text()).get("content_hash")
    for split in SPLITS:
        dirs = _episode_dirs(root, split)
        if not dirs:
            continue
        lon = np.zeros(len(LONGITUDINAL_CLASSES), np.int64)
        lat = np.zeros(len(LATERAL_CLASSES), np.int64)
        samples = keyframes = with_text = 0
        families: dict[str, int] = {}
        size = 0
        for d in dirs:
            meta = _read_meta(d)
            ids = np.load(d / "decision_ids.npy").astype(np.int64)
            lon += np.bincount(ids[:, 0], minlength=len(lon))
            lat += np.bincount(ids[:, 1], minlength=len(lat))
            samples += int(meta["samples"])
            keyframes += int(meta["keyframes"])
            with_text += sum(line != b"null" for line in _label_lines(d / LABELS_FILE))
            families[meta["family"]] = families.get(meta["family"], 0) + 1
            size += _dir_bytes(d)
        out[split] = {
            "episodes": len(dirs), "samples": samples, "keyframes": keyframes,
            "samples_with_text": with_text, "bytes": size, "families": families,
            "longitudinal": {name or "none": int(n)
                             for name, n in zip(LONGITUDINAL_CLASSES, lon) if n},
            "lateral": {name or "none": int(n) for name, n in zip(LATERAL_CLASSES, lat) if n},
        }
    return out
