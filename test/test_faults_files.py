"""Bad files and configuration at start-up: what a user sees when a node cannot start.

Each case starts the real node process (``python -m alpamayo_ros.nodes.<node>``, as its
launcher does) with one bad input: corrupted, truncated or re-versioned weights, a
tokenizer of another model, a missing, contradictory or mistyped parameter, an unknown
camera, an unreadable parameters file, a bag whose recorder was killed. Asserted: the
process exits with code 1 by itself, its output names the file or parameter and what is
wrong, and it holds no Python traceback (a clear one-line error, not a crash dump).

The loaders themselves are fuzzed in process (test/test_fuzz_*.py: e.g. a truncated
file whose checksum was updated fails the safetensors parse with a WeightsError); these
are about the process a user starts. All processes start at once (a module fixture) and each test
waits for its own, so the module costs about one policy start-up of wall time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from test.helpers.faults import record
from test.helpers.ros_harness import REPO_ROOT, stop_process

pytestmark = pytest.mark.ros

POLICY, CONTROLLER, SYNC = ("alpamayo_ros.nodes.policy_node", "alpamayo_ros.nodes.controller_node",
                            "alpamayo_ros.nodes.camera_sync")
PLAYER, RECORDER = "alpamayo_ros.nodes.bag_player", "alpamayo_ros.nodes.bag_recorder"
EXIT_TIMEOUT_S = 180.0  # all start at once on a shared 2-core machine


@dataclass
class Case:
    """One bad start: how it is made and what the output must say."""

    area: str
    fault: str
    module: str
    args: list[str]  # after the module (ROS args included)
    expect: list[str]  # substrings of the output; "{w}" is the case's weights dir
    weights: str = ""  # name of the damaged weights copy (see _damage)
    package_copy: bool = False  # run from a copy of the package without shipped weights
    extra: dict = field(default_factory=dict)


def _policy_args(*params: str) -> list[str]:
    out = ["--ros-args", "--params-file", "config/sync.yaml", "--params-file",
           "config/policy.yaml", "-p", "device:=cpu", "-p", "warmup_runs:=0"]
    for p in params:
        out += ["-p", p]
    return out


CASES = [
    Case("files", "weights corrupted (16 bytes flipped in model.safetensors)", POLICY,
         _policy_args("weights_dir:={w}"), ["{w}/model.safetensors",
                                            "does not match the SHA-256 in config.json"],
         weights="flipped"),
    Case("files", "weights truncated (model.safetensors cut to 60 %)", POLICY,
         _policy_args("weights_dir:={w}"), ["{w}/model.safetensors",
                                            "does not match the SHA-256 in config.json"],
         weights="truncated"),
    Case("files", "another format version (config.json format_version 2)", POLICY,
         _policy_args("weights_dir:={w}"), ["{w}/config.json", "format_version 2",
                                            "is not the supported"], weights="version2"),
    Case("files", "weights directory whose tokenizer.json is another model's", POLICY,
         _policy_args("weights_dir:={w}"), ["{w}/tokenizer.json", "does not match config.json"],
         weights="tokenizer"),
    Case("config", "missing parameter: weights_dir empty, no shipped weights", POLICY,
         _policy_args(), ["weights_dir", "is empty", "weights/default"], package_copy=True),
    Case("config", "unknown camera name in model_cameras", POLICY,
         _policy_args("weights_dir:={w}", "model_cameras:=[front_wide, roof_cam]"),
         ["roof_cam"], weights="good"),
    Case("config", "contradictory: a model camera the camera sync does not synchronize",
         POLICY, _policy_args("weights_dir:={w}", "camera_names:=[front_wide, front_tele]"),
         ["model_cameras", "not synchronized", "camera_names"], weights="good"),
    Case("config", "controller: contradictory soft_stop_accel_mps2 below min_command_accel_mps2",
         CONTROLLER, ["--ros-args", "--params-file", "config/safety.yaml", "-p",
                      "soft_stop_accel_mps2:=-12.0"],
         ["soft_stop_accel_mps2", "min_command_accel_mps2"]),
    Case("config", "controller: parameter of the wrong type (policy_timeout_s:=fast)",
         CONTROLLER, ["--ros-args", "-p", "policy_timeout_s:=fast"],
         ["policy_timeout_s", "must be a number", "fast"]),
    Case("config", "camera sync: contradictory history_tolerance_s >= history_stride_s / 2",
         SYNC, ["--ros-args", "--params-file", "config/sync.yaml", "-p",
                "history_tolerance_s:=0.06"], ["history_tolerance_s", "history_stride_s"]),
    Case("config", "camera sync: no camera_names", SYNC,
         ["--ros-args", "-p", "camera_names:=[]"], ["camera_names", "at least one camera"]),
    Case("files", "parameters file that does not exist", CONTROLLER,
         ["--ros-args", "--params-file", "config/no_such_file.yaml"],
         ["no_such_file.yaml", "Couldn't parse params file"]),
    Case("config", "bag recorder: missing parameter (no topics)", RECORDER,
         ["--out", "{tmp}/unused_bag"], ["topics", "all_topics"]),
    Case("files", "bag player given a bag whose recorder was killed", PLAYER,
         ["{tmp}/killed_bag"], ["metadata.yaml", "alpamayo recover"]),
]
IDS = [f"{c.module.rsplit('.', 1)[1]}-{i}" for i, c in enumerate(CASES)]


def _damage(good: Path, out: Path, kind: str) -> Path:
    """A copy of the ``good`` weights directory with one defect."""
    from alpamayo_ros.model.tokenizer import CocTokenizer, seed_corpus

    shutil.copytree(good, out)
    weights, config = out / "model.safetensors", out / "config.json"
    data = bytearray(weights.read_bytes())
    if kind == "flipped":
        mid = len(data) // 2
        data[mid:mid + 16] = bytes(b ^ 0xFF for b in data[mid:mid + 16])
        weights.write_bytes(bytes(data))
    elif kind == "truncated":  # a copy that stopped early: the checksum catches it
        weights.write_bytes(bytes(data[: len(data) * 6 // 10]))
    elif kind == "version2":
        meta = json.loads(config.read_text())
        meta["format_version"] = 2
        config.write_text(json.dumps(meta))
    elif kind == "tokenizer":
        meta = json.loads(config.read_text())
        bins = meta["policy"]["tokenizer"]["trajectory_bins"]
        CocTokenizer.train(seed_corpus(), bpe_vocab_size=300, trajectory_bins=bins).save(out)
    return out


def _package_copy(dest: Path) -> Path:
    """The package, its config/ and package.xml in ``dest``, without weights/."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO_ROOT / "alpamayo_ros", dest / "alpamayo_ros", ignore=ignore)
    shutil.copytree(REPO_ROOT / "config", dest / "config", ignore=ignore)
    shutil.copy(REPO_ROOT / "package.xml", dest / "package.xml")
    return dest


def _killed_bag(dest: Path) -> Path:
    """A bag directory as a SIGKILLed recorder leaves it (flushed chunks, no metadata)."""
    from alpamayo_ros.bags.record import BagWriter
    from alpamayo_ros.data.bag import make_typestore

    store = make_typestore()
    writer = BagWriter(dest.with_name("full_bag"))
    writer.add_topic("/chatter", "std_msgs/msg/String")
    writer.write("/chatter", 1, bytes(store.serialize_cdr(
        store.types["std_msgs/msg/String"](data="hello"), "std_msgs/msg/String")))
    writer.flush()
    dest.mkdir()
    for f in writer.path.glob("*.mcap"):
        shutil.copy(f, dest / f.name)
    writer.close()
    return dest


@pytest.fixture(scope="module")
def started(ros_env, tmp_path_factory):
    """Every case's process, started at once: ``{index: (proc, log, weights, t0)}``."""
    from alpamayo_ros.model.policy import Policy

    tmp = Path(tmp_path_factory.mktemp("bad_start"))
    good = tmp / "good"
    Policy.from_config("tiny", device="cpu").save_pretrained(good)
    _killed_bag(tmp / "killed_bag")
    procs = {}
    try:
        for i, case in enumerate(CASES):
            weights = good if case.weights == "good" else (
                _damage(good, tmp / case.weights, case.weights) if case.weights else None)
            env, cwd = dict(ros_env), REPO_ROOT
            if case.package_copy:
                cwd = _package_copy(tmp / "package_copy")
                env["PYTHONPATH"] = str(cwd)
            args = [a.replace("{w}", str(weights)).replace("{tmp}", str(tmp))
                    for a in case.args]
            log = tmp / f"case{i}.log"
            with open(log, "w") as out:
                proc = subprocess.Popen([sys.executable, "-m", case.module, *args], env=env,
                                        cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
            procs[i] = (proc, log, weights, time.monotonic())
        yield procs
    finally:
        for proc, *_ in procs.values():
            stop_process(proc)


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_bad_start_exits_with_a_clear_error(started, index) -> None:
    case = CASES[index]
    proc, log, weights, t0 = started[index]
    try:
        proc.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case.fault}: still running after {EXIT_TIMEOUT_S} s:\n{log.read_text()}")
    text = log.read_text()
    assert proc.returncode == 1, f"{case.fault}: exit code {proc.returncode}\n{text}"
    for part in case.expect:
        part = part.replace("{w}", str(weights))
        assert part in text, f"{case.fault}: {part!r} not in the output:\n{text}"
    assert "Traceback" not in text, f"{case.fault}: a traceback instead of an error:\n{text}"
    line = next(ln for ln in text.splitlines() if "fatal" in ln)
    shown = line.split("fatal: ", 1)[1]
    for path in filter(None, (str(weights) if weights else "", str(log.parent))):
        shown = shown.replace(path, "<dir>")
    shown = shown.replace("`", "'")  # the table shows it as inline code
    record(case.area, case.fault, f"exit 1: `{shown[:300]}`",
           f"test_faults_files.py::test_bad_start_exits_with_a_clear_error[{IDS[index]}]")
