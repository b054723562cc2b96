"""Dataset spec, parallel episode-shard builder and memory-mapped loader (data.episodes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alpamayo_ros.data.coc import ego_future, ego_history
from alpamayo_ros.data.episodes import (
    EpisodeDataset,
    build_dataset,
    class_balanced_weights,
    dataset_info,
)
from alpamayo_ros.data.labels import label_steps
from alpamayo_ros.data.perception_targets import perception_targets
from alpamayo_ros.data.scenarios import FAMILIES, make_scenario, simulate
from alpamayo_ros.data.spec import DatasetSpec
from alpamayo_ros.perception import PERCEPTION_DIM, PERCEPTION_INDEX
from alpamayo_ros.sample import DrivingSample
from alpamayo_ros.taxonomy import decision_class_ids

REPO = Path(__file__).resolve().parents[1]


def tiny_spec(**overrides) -> DatasetSpec:
    kw = dict(families=["follow_lead"], train_seeds=(0, 2), val_seeds=(8000, 8001),
              test_seeds=(9000, 9001), rig="tiny", image_height_px=32, image_width_px=48,
              duration_s=9.0, history_frames=2)
    kw.update(overrides)
    return DatasetSpec(**kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("episodes")
    return root, build_dataset(tiny_spec(), root, workers=1)


# --------------------------------------------------------------------------- spec
def test_recipes_load_and_validate():
    default = DatasetSpec.from_yaml(REPO / "config/data/default.yaml")
    assert default.family_names() == sorted(FAMILIES) and len(FAMILIES) == 20
    assert len(default.episodes("train")) == 20 * 16
    assert len(default.episodes("val")) == 20 * 2 and len(default.episodes("test")) == 20 * 4
    assert (default.rig, default.image_height_px, default.image_width_px, default.stride) == (
        "train_small", 96, 160, 1)
    tiny = DatasetSpec.load(REPO / "config/data/tiny.yaml")
    assert 2 <= len(tiny.family_names()) <= 3 and tiny.duration_s < 20


def test_spec_refuses_test_seed_overlap_and_bad_fields():
    with pytest.raises(ValueError, match="train_seeds .* overlaps the test seed range"):
        tiny_spec(train_seeds=(8990, 9010))
    with pytest.raises(ValueError, match="val_seeds .* overlaps the test seed range"):
        tiny_spec(val_seeds=(8999, 9001))
    with pytest.raises(ValueError, match="test_seeds must start"):
        tiny_spec(test_seeds=(100, 104))
    with pytest.raises(ValueError, match="overlap"):
        tiny_spec(val_seeds=(1, 3))
    with pytest.raises(ValueError, match="families"):
        tiny_spec(families=["no_such_family"])
    with pytest.raises(ValueError, match="stride"):
        tiny_spec(stride=0)
    with pytest.raises(ValueError, match="rig"):
        tiny_spec(rig="nope")
    with pytest.raises(ValueError, match="unknown dataset spec keys"):
        DatasetSpec.from_dict({"famillies": "all"})


def test_spec_hashes():
    a = tiny_spec()
    assert a.content_hash() == tiny_spec().content_hash()
    assert a.episode_hash() == tiny_spec(val_seeds=(8000, 8005)).episode_hash()
    assert a.content_hash() != tiny_spec(val_seeds=(8000, 8005)).content_hash()
    assert a.episode_hash() != tiny_spec(image_width_px=64).episode_hash()
    assert a.episode_hash() != tiny_spec(history_frames=3).episode_hash()
    # Sharding by seed range picks the intersection with the split's range.
    assert a.episodes("train", (1, 100)) == [("follow_lead", 1)]
    assert a.episodes("test", (0, 10)) == []


def test_a_new_renderer_version_changes_the_hashes(monkeypatch):
    """Episodes drawn by an older renderer are rebuilt, not skipped as already built."""
    from alpamayo_ros.data import spec as spec_module

    before = (tiny_spec().episode_hash(), tiny_spec().content_hash())
    monkeypatch.setattr(spec_module, "RENDERER_VERSION", spec_module.RENDERER_VERSION + 1)
    assert tiny_spec().episode_hash() != before[0]
    assert tiny_spec().content_hash() != before[1]


def test_signal_counterfactuals_enter_the_hashes_and_are_validated():
    off, on = tiny_spec(), tiny_spec(signal_counterfactuals=True)
    for split in ("train", "val", "test"):
        assert off.episode_hash(split) != on.episode_hash(split)
    assert off.content_hash() != on.content_hash()
    with pytest.raises(ValueError, match="signal_counterfactuals must be true or false"):
        tiny_spec(signal_counterfactuals="yes")


def test_signal_counterfactuals_are_perception_only_samples_with_swapped_colours(tmp_path):
    """Signal episodes store a red/green-swapped video, served as perception-only samples.

    Their colour targets are swapped too.
    """
    spec = tiny_spec(families=["red_light", "lead_at_red_light", "follow_lead"],
                     train_seeds=(0, 1), duration_s=12.0, signal_counterfactuals=True)
    build_dataset(spec, tmp_path, splits=["train"], workers=1)
    assert (tmp_path / "train/red_light_00000/frames_signal_swap.npy").is_file()
    assert not (tmp_path / "train/follow_lead_00000/frames_signal_swap.npy").exists()
    plain = EpisodeDataset(tmp_path, "train")
    ds = EpisodeDataset(tmp_path, "train", signal_counterfactuals=True)
    n = len(plain)
    assert ds.base_size == n and len(ds) > n
    red, green = PERCEPTION_INDEX["light_red"], PERCEPTION_INDEX["light_green"]
    colours = set()
    for i in range(n, len(ds)):
        s = ds[i]
        e, j = ds.locate(i)
        base = plain[int(ds.offsets[e]) + j]
        assert "red_light" in ds.episodes[e]["family"] and s.meta["signal_swap"]
        assert s.perception_only and s.coc is None and s.decisions is None and not s.keyframe
        assert s.perception_mask[red] and (base.perception[red] + base.perception[green]) == 1
        assert (s.perception[red], s.perception[green]) == (base.perception[green],
                                                            base.perception[red])
        others = np.ones(PERCEPTION_DIM, bool)
        others[[red, green]] = False
        np.testing.assert_array_equal(s.perception[others], base.perception[others])
        np.testing.assert_array_equal(s.perception_mask, base.perception_mask)
        np.testing.assert_array_equal(s.future_controls, base.future_controls)
        k = s.meta["index"] - ds.episodes[e]["first_frame"]
        swapped_video = np.load(Path(ds.episodes[e]["dir"]) / "frames_signal_swap.npy")
        np.testing.assert_array_equal(s.images, swapped_video[k - 1: k + 1])
        colours.add("red" if base.perception[red] else "green")
    assert colours == {"red", "green"}
    # The cheap accessors cover the extra samples.
    extra = len(ds) - n
    np.testing.assert_array_equal(ds.decision_ids()[n:], np.full((extra, 2), -1))
    np.testing.assert_array_equal(ds.decision_ids()[:n], plain.decision_ids())
    assert not ds.has_text()[n:].any() and not ds.keyframe_mask()[n:].any()
    np.testing.assert_array_equal(ds.perception_only_mask(), np.arange(len(ds)) >= n)
    assert not plain.perception_only_mask().any()
    assert len(ds.controls()) == len(ds)
    np.testing.assert_array_equal(ds.control_stats()[1], plain.control_stats()[1])


# --------------------------------------------------------------------------- builder
def test_parallel_build_is_byte_identical(built, tmp_path):
    root, summary = built
    assert summary["episodes"] == summary["built"] == 4 and summary["skipped"] == 0
    assert summary["samples"] == 4 * 11 and summary["bytes"] > 0
    other = tmp_path / "two_workers"
    summary2 = build_dataset(tiny_spec(), other, splits=["train"], workers=2)
    assert summary2["built"] == 2
    files = sorted(p.relative_to(root) for p in (root / "train").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(other) for p in other.rglob("*")
                           if p.is_file() and p.name != "spec.json")
    assert len([f for f in files if f.name == "frames.npy"]) == 2
    for f in files:
        assert (root / f).read_bytes() == (other / f).read_bytes(), f


def test_rebuild_skips_and_cli(built, capsys):
    from alpamayo_ros.cli import main

    root, _ = built
    meta = root / "train" / "follow_lead_00000" / "meta.json"
    before = meta.stat().st_mtime_ns
    spec_file = root.parent / "tiny_spec.json"  # JSON is YAML
    spec_file.write_text(json.dumps(tiny_spec().to_dict()))
    assert main(["dataset", "build", "--spec", str(spec_file), "--out", str(root),
                 "--split", "train", "--seeds", "0:2", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["episodes"] == 2 and out["built"] == 0 and out["skipped"] == 2
    assert meta.stat().st_mtime_ns == before
    assert main(["dataset", "info", str(root)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["train"]["episodes"] == 2 and info["val"]["episodes"] == 1
    assert info["train"]["samples"] == 22 and info["train"]["keyframes"] >= 2
    assert sum(info["train"]["longitudinal"].values()) == 22
    assert info["train"]["lateral"] == {"lane_keeping": 22}
    assert info == dataset_info(root)


def test_build_refuses_test_seeds_in_train(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("families: [follow_lead]\ntrain_seeds: [0, 9001]\n")
    from alpamayo_ros.cli import main

    with pytest.raises(SystemExit, match="overlaps the test seed range"):
        main(["dataset", "build", "--spec", str(bad), "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- loader
def test_loader_samples_match_the_simulation(built):
    root, _ = built
    ds = EpisodeDataset(root, "train")
    assert len(ds) == 22
    episode = simulate(make_scenario("follow_lead", 1, 9.0))
    steps = label_steps(episode)
    for item in (11, 16, 21):  # the second episode (seed 1)
        s = ds[item]
        assert isinstance(s, DrivingSample)
        step = steps[item - 11]
        i = step.index
        assert s.meta == {"family": "follow_lead", "seed": 1, "index": i, "split": "train"}
        assert s.images.shape == (2, 4, 32, 48, 3) and s.images.dtype == np.uint8
        assert len(s.cameras) == 4 and s.cameras[0].width_px == 48
        # Intrinsics scaled to the stored size (tiny rig renders 96x60).
        assert s.cameras[0].intrinsics[0, 2] == pytest.approx(24.0)
        assert s.cameras[0].intrinsics[1, 2] == pytest.approx(16.0)
        np.testing.assert_allclose(s.ego_history, ego_history(episode, i), atol=1e-5)
        np.testing.assert_allclose(s.future_xyh, ego_future(episode, i), atol=1e-5)
        assert s.future_controls.shape == (64, 2) and np.all(np.isfinite(s.future_controls))
        assert s.speed_mps == pytest.approx(episode.frames[i].ego.v_mps, abs=1e-5)
        assert s.decisions == step.decisions and s.keyframe == step.keyframe
        assert s.coc is not None and s.coc.text == step.coc.text
        values, mask = perception_targets(episode, i)
        np.testing.assert_array_equal(s.perception, values)
        np.testing.assert_array_equal(s.perception_mask, mask)
        assert s.perception.shape == (PERCEPTION_DIM,)
        assert s.stamp_ns == round(episode.frames[i].time_s * 1e9)
    frames = np.load(root / "train" / "follow_lead_00001" / "frames.npy")
    assert len(frames) == 11 + 1  # the samples' frames and one frame of history before
    np.testing.assert_array_equal(ds[21].images, frames[-2:])
    np.testing.assert_array_equal(ds[11].images, frames[:2])
    assert ds[21].images.flags.writeable and ds[21].perception.flags.writeable
    # Consecutive samples share frames: the newest frame of one is the oldest of the next.
    np.testing.assert_array_equal(ds[12].images[0], ds[11].images[1])
    assert not np.array_equal(ds[11].images[0], ds[11].images[1])  # the scene moves
    with pytest.raises(IndexError):
        ds[22]


def test_loader_accessors(built):
    root, _ = built
    ds = EpisodeDataset(root, "train")
    samples = [ds[i] for i in range(len(ds))]
    ids = ds.decision_ids()
    assert ids.shape == (22, 2) and ids.dtype == np.int64
    assert [tuple(r) for r in ids] == [decision_class_ids(*s.decisions) for s in samples]
    np.testing.assert_array_equal(ds.keyframe_mask(), [s.keyframe for s in samples])
    assert ds.keyframe_mask().sum() >= 2
    np.testing.assert_array_equal(ds.controls(), np.stack([s.future_controls
                                                           for s in samples]))
    mean, std = ds.control_stats()
    assert mean.shape == std.shape == (2,) and np.all(std > 0)
    assert ds.texts() == [s.coc.text for s in samples if s.coc is not None]
    assert ds.navigation_texts() == [t for t in {s.meta["seed"]: s.navigation
                                                 for s in samples}.values() if t]
    # A half-written episode (temp dir of an interrupted build) is not listed.
    (root / "train" / ".tmp-follow_lead_00005-1").mkdir()
    assert len(EpisodeDataset(root, "train")) == 22


def test_dataloader_with_two_workers(built):
    import torch
    from torch.utils.data import DataLoader, WeightedRandomSampler

    root, _ = built
    ds = EpisodeDataset(root, "val")
    direct = [ds[i] for i in range(len(ds))]
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=list)
    got = [s for batch in loader for s in batch]
    assert len(got) == len(direct) == 11
    for a, b in zip(got, direct):
        assert a.meta == b.meta
        np.testing.assert_array_equal(a.images, b.images)
    weights = class_balanced_weights(ds.decision_ids())
    sampler = WeightedRandomSampler(torch.as_tensor(weights), num_samples=8,
                                    generator=torch.Generator().manual_seed(0))
    assert all(0 <= i < len(ds) for i in sampler)


def test_class_balanced_weights():
    ids = np.array([[1, 1]] * 9 + [[2, 1]] * 1 + [[1, 5]] * 4, dtype=np.int64)
    w = class_balanced_weights(ids)
    assert w.shape == (14,) and w.mean() == pytest.approx(1.0)
    # lon class 1 has 13 samples, class 2 one; lat class 1 has 10, class 5 four.
    expected = np.array([13 ** -0.5 * 10 ** -0.5] * 9 + [1.0 * 10 ** -0.5] + [
        13 ** -0.5 * 4 ** -0.5] * 4)
    np.testing.assert_allclose(w, expected / expected.mean())
    # The rare class gets more total weight than under uniform sampling.
    assert w[9] > w[0] and w[10] > w[0]
    with pytest.raises(ValueError):
        class_balanced_weights(np.zeros(5))
