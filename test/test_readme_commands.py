"""Every command block of the README runs as written (issue #11, usability).

The README's fenced blocks are extracted; each must be tagged (``bash``: commands,
``text``: diagrams, ``python``: the API sketch). Every command of a ``bash`` block must be
classified in :data:`COMMANDS`, so a new block fails here until someone decides how it is
checked:

- ``run``: run as written in a bash that sourced ``.venv/bin/activate`` (the README's
  setup), from a scratch directory holding the checkout's ``config/``, ``weights/``, ...
  and fresh ``data/``, ``docs/``, ``out/`` (so nothing tracked is overwritten);
  placeholders (:data:`PLACEHOLDERS`) are filled in;
- ``dry-run``: a bring-up that runs until stopped: run with ``--dry-run`` appended (the
  arguments resolve, the node commands are printed); ``test_ros_closed_loop.py`` runs one;
- ``start``: a node that runs until stopped: started as written, still running 2 s after
  its first log line, then stopped with SIGINT, and it must exit cleanly;
- ``parse``: too long to run in the suite (minutes to an hour): the real parser of the
  command parses it (every subcommand, flag and choice exists) and the repository files
  it names exist;
- ``static``: needs what cannot be installed here (``ros2`` CLI, rviz2): the executable,
  launch file, launch arguments, parameter file or RViz config it names exist;
- ``skip``: nothing to check here, with the reason.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINKED = ("config", "weights", "launch", "msg", "rviz", "scripts", ".venv")

# Placeholders the README uses for the reader's own values, and what the test uses.
PLACEHOLDERS = {
    "BAG": "data/bags/lead_at_red_light_00000",  # written by the README's quick generate
    "DIR": "weights/default",
    "FILE": "config/training/quick.yaml",
}

RUN, DRY_RUN, START, PARSE, STATIC, SKIP = "run", "dry-run", "start", "parse", "static", "skip"
LONG = "minutes to an hour on the reference CPU"

# command (as shlex tokens joined by one space, comments removed) -> (kind, why)
COMMANDS: dict[str, tuple[str, str]] = {
    "make demo": (SKIP, "the demo itself (minutes); the lead's closed-loop checks run it"),
    "make test": (SKIP, "this suite"),
    "make setup": (SKIP, "runs before this suite (make test depends on it); "
                         "test_devenv.py checks what it writes"),
    "source .venv/bin/activate": (RUN, "the README's setup"),
    "alpamayo --help": (RUN, "cheap"),
    "python -m alpamayo_ros up simulation --show-args": (RUN, "cheap"),
    "deactivate": (RUN, "cheap"),
    "cd ~/ros2_ws/src && git clone <this repository> alpamayo_ros": (
        SKIP, "a vehicle's ROS 2 workspace and the network"),
    "cd ~/ros2_ws && rosdep install --from-paths src -y && colcon build --packages-select "
    "alpamayo_ros": (SKIP, "rosdep needs a ROS 2 install; test_colcon_build.py runs the "
                           "colcon build"),
    "source install/setup.bash": (SKIP, "the colcon workspace of the line above"),
    "ros2 launch alpamayo_ros simulation.launch.py": (STATIC, "ros2 launch is not installable "
                                                              "from PyPI"),
    "alpamayo up simulation device:=cpu rate_hz:=2.0": (DRY_RUN, "runs until stopped"),
    "alpamayo up replay bag:=BAG weights_dir:=DIR": (DRY_RUN, "runs until stopped"),
    "rviz2 -d $(ros2 pkg prefix alpamayo_ros)/share/alpamayo_ros/rviz/alpamayo.rviz": (
        STATIC, "rviz2 is not installable from PyPI"),
    "ros2 run alpamayo_ros sim_node --ros-args --params-file $(ros2 pkg prefix alpamayo_ros)"
    "/share/alpamayo_ros/config/sim.yaml -p family:=lead_at_red_light -p seed:=3": (
        STATIC, "the ros2 CLI is not installable from PyPI"),
    "python -m alpamayo_ros.nodes.sim_node --ros-args --params-file config/sim.yaml": (
        START, "runs until stopped"),
    "alpamayo replay BAG --clock --rate 0.5": (PARSE, "plays a 20 s bag at half speed: 40 s; "
                                                      "test_ros_bags.py plays bags"),
    "ros2 run alpamayo_ros bag_player BAG --clock --rate 0.5": (STATIC, "the ros2 CLI"),
    "alpamayo record --out DIR --all --max-duration-s 60 --ros-args -p use_sim_time:=true": (
        PARSE, "records for a minute; test_ros_bags.py records"),
    "ros2 run alpamayo_ros bag_recorder --out DIR --all": (STATIC, "the ros2 CLI"),
    "alpamayo bench decode --warmup 5 --repeats 30": (PARSE, "a benchmark (minutes)"),
    "alpamayo bench train --config config/training/default.yaml --steps 24 --out "
    "out/bench/train.json": (PARSE, "a benchmark on the default dataset (15 minutes here)"),
    "alpamayo generate --out data/bags --families all --episodes-per-family 5 --seed 0 "
    "--rig ar1": (PARSE, "100 bags: " + LONG),
    "alpamayo generate --out data/bags --families lead_at_red_light --duration-s 8": (
        RUN, "one short bag, seconds"),
    "alpamayo cache data/bags/* --out data/cache": (RUN, "the bag of the line above"),
    "alpamayo mosaic --family lead_at_red_light --out docs/mosaic.png": (RUN, "one frame"),
    "alpamayo label-report --seeds 20 --fit": (PARSE, "20 simulated episodes, ~40 s"),
    "alpamayo render-bench --rig ar1 --frames 60": (RUN, "a few seconds"),
    "alpamayo dataset build --spec config/data/default.yaml --out artifacts/datasets/default "
    "--workers 2": (PARSE, "13 minutes"),
    "alpamayo dataset info artifacts/datasets/default": (PARSE, "needs the dataset above"),
    "alpamayo train --config config/training/default.yaml": (PARSE, "62 minutes"),
    "alpamayo train --config config/training/quick.yaml": (PARSE, "minutes of training"),
    "alpamayo train --config FILE --stage sft --resume artifacts/train/default": (
        PARSE, "needs a training run"),
    "torchrun --nproc-per-node 2 -m alpamayo_ros.training.commands --config FILE": (
        PARSE, "two training processes"),
    "ros2 run alpamayo_ros train --config FILE": (STATIC, "the ros2 CLI"),
    "alpamayo eval --weights weights/default --data artifacts/datasets/default --split test "
    "--out out/eval": (PARSE, "needs the dataset; minutes"),
    "alpamayo bench transport": (PARSE, "a benchmark of two processes per setting (~30 s)"),
    "make setup ROS2_UPSTREAM=../shared/ros2-upstream": (
        SKIP, "builds the upstream ROS 2 packages (1-3 min); .ci/run sets it, and "
              "test_launch_bringups.py runs what it installs"),
    "alpamayo bench cycles --cycles 20": (PARSE, "20 bring-up start/stop cycles (~4 min)"),
}

LANGUAGES = {"bash": "commands", "text": "diagram, not run",
             "python": "the API sketch (test_model_policy.py exercises the API)"}


def readme_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """``(line, language, lines)`` of every fenced block."""
    blocks, lang, start, body = [], None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if lang is None:
                lang, start, body = line[3:].strip(), number, []
            else:
                blocks.append((start, lang, body))
                lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"README.md: the block opened at line {start} is not closed"
    return blocks


def commands_of(lines: list[str]) -> list[str]:
    """Commands of a shell block: continuation lines joined, comment-only lines dropped."""
    out, current = [], ""
    for line in lines:
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip() and not current.strip().startswith("#"):
            out.append(current.strip())
        current = ""
    return out


def key(command: str) -> str:
    """The classification key: shell words joined by one space, comment removed."""
    return " ".join(shlex.split(command, comments=True))


def fill(command: str) -> str:
    """The command with its placeholders replaced by the test's values."""
    return re.sub(r"\b(" + "|".join(PLACEHOLDERS) + r")\b",
                  lambda m: PLACEHOLDERS[m.group(1)], command)


def shell_commands() -> list[tuple[int, str]]:
    out = []
    for line, lang, body in readme_blocks(README.read_text()):
        if lang == "bash":
            out += [(line, command) for command in commands_of(body)]
    return out


def test_every_block_is_tagged_and_every_command_classified() -> None:
    blocks = readme_blocks(README.read_text())
    untagged = [line for line, lang, _ in blocks if lang not in LANGUAGES]
    assert not untagged, (f"README.md blocks at lines {untagged} need a language: one of "
                          f"{sorted(LANGUAGES)}")
    found = {key(command) for _, command in shell_commands()}
    unclassified = sorted(found - set(COMMANDS))
    assert not unclassified, ("README.md commands not classified in "
                              f"test_readme_commands.COMMANDS: {unclassified}")
    stale = sorted(set(COMMANDS) - found)
    assert not stale, f"COMMANDS lists commands the README no longer has: {stale}"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A directory that looks like the checkout for the commands, with fresh outputs."""
    path = tmp_path_factory.mktemp("readme")
    for name in LINKED:
        (path / name).symlink_to(ROOT / name)
    for name in ("data", "docs", "out", "artifacts"):
        (path / name).mkdir()
    return path


@pytest.fixture(scope="module")
def reader_env(ros_env: dict[str, str]) -> dict[str, str]:
    """A fresh shell's environment (none of RUN_ENV's variables) on a private ROS domain."""
    env = {k: v for k, v in ros_env.items()
           if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _script_of(commands: list[str], scratch: Path) -> str:
    lines = ["set -eo pipefail", f"cd {scratch}", "source .venv/bin/activate"]
    for command in commands:
        kind, _ = COMMANDS[key(command)]
        if kind == DRY_RUN:  # without its comment, which would swallow the flag
            filled = fill(shlex.join(shlex.split(command, comments=True))) + " --dry-run"
        else:
            filled = fill(command)
        lines += [f"echo '>>> {filled}'", filled]
    return "\n".join(lines) + "\n"


def test_runnable_blocks_run_as_written(scratch: Path, reader_env: dict[str, str]) -> None:
    """Each block's run/dry-run commands, in order, in one bash (as a reader pastes it)."""
    by_block: dict[int, list[str]] = {}
    for line, command in shell_commands():
        if COMMANDS[key(command)][0] in (RUN, DRY_RUN):
            by_block.setdefault(line, []).append(command)
    assert by_block, "the README has no runnable command"
    for line, commands in sorted(by_block.items()):
        proc = subprocess.Popen(["bash", "-c", _script_of(commands, scratch)], env=reader_env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:  # a command that does not end: stop all of it
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        assert proc.returncode == 0, f"README.md block at line {line} failed:\n{output[-4000:]}"
    assert (scratch / "docs" / "mosaic.png").stat().st_size > 1000
    assert list((scratch / "data" / "cache").iterdir())


@pytest.mark.ros
def test_long_running_nodes_start_as_written(scratch: Path,
                                            reader_env: dict[str, str]) -> None:
    for _, command in shell_commands():
        if COMMANDS[key(command)][0] != START:
            continue
        proc = subprocess.Popen(
            ["bash", "-c", f"cd {scratch} && source .venv/bin/activate && exec {command}"],
            env=reader_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        output, deadline = [], time.monotonic() + 90.0
        try:
            for line in iter(proc.stdout.readline, ""):
                output.append(line)
                if "[INFO]" in line or time.monotonic() > deadline:
                    break
            assert any("[INFO]" in line for line in output), ''.join(output)
            time.sleep(2.0)  # still running a moment after it logged that it started
            assert proc.poll() is None, f"{command} exited:\n{''.join(output)}"
            os.killpg(proc.pid, signal.SIGINT)
            rc = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert rc in (0, -signal.SIGINT, 130), f"{command} ended with {rc}:\n{''.join(output)}"


def _check_paths(words: list[str]) -> None:
    for word in words:
        value = word.split(":=", 1)[-1]
        if value.startswith(("config/", "weights/", "launch/", "rviz/")) and "*" not in value:
            assert (ROOT / value).exists(), f"README names {value}, which does not exist"


def _parse(words: list[str], command: str) -> None:
    from alpamayo_ros.cli import build_parser

    if words[0] == "alpamayo":
        parser, argv = build_parser(), words[1:]
    elif words[0] == "torchrun":
        from alpamayo_ros.training import commands as train_commands

        at = words.index("-m")
        assert words[at + 1] == "alpamayo_ros.training.commands", command
        parser = argparse.ArgumentParser(prog="train")
        train_commands.add_arguments(parser)
        argv = words[at + 2:]
    else:
        raise AssertionError(f"no parser known for {command!r}")
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"the CLI refuses the README's command {command!r}") from exc
    _check_paths(argv)


def _path_after(words: list[str], flag: str) -> Path:
    """The path argument after ``flag``; ``$(ros2 pkg prefix X)/a/b`` gives ``a/b``'s name."""
    at = words.index(flag) + 1
    if words[at].startswith("$("):
        while ")" not in words[at]:
            at += 1
    return Path(words[at].split(")")[-1])


def _static(words: list[str], command: str) -> None:
    from alpamayo_ros import graph
    from alpamayo_ros.bags.config import add_player_arguments, add_recorder_arguments

    if words[:3] == ["ros2", "launch", "alpamayo_ros"]:
        launch_file = ROOT / "launch" / words[3]
        assert launch_file.is_file(), command
        declared = {a.name for a in graph.arguments(words[3].split(".")[0])}
        names = {w.split(":=")[0] for w in words[4:] if ":=" in w}
        assert names <= declared, f"{command}: undeclared launch arguments {names - declared}"
    elif words[:3] == ["ros2", "run", "alpamayo_ros"]:
        exe = ROOT / "scripts" / words[3]
        assert exe.is_file() and os.access(exe, os.X_OK), f"{command}: no executable {exe}"
        rest = words[4:words.index("--ros-args")] if "--ros-args" in words else words[4:]
        adders = {"bag_player": add_player_arguments, "bag_recorder": add_recorder_arguments}
        if words[3] in adders or words[3] == "train":
            parser = argparse.ArgumentParser(prog=words[3])
            if words[3] == "train":
                from alpamayo_ros.training.commands import add_arguments
                add_arguments(parser)
            else:
                adders[words[3]](parser)
            parser.parse_args(rest)
        if "--params-file" in words:
            assert (ROOT / "config" / _path_after(words, "--params-file").name).is_file()
    elif words[0] == "rviz2":
        assert (ROOT / "rviz" / _path_after(words, "-d").name).is_file(), command
    else:
        raise AssertionError(f"no static check known for {command!r}")
    _check_paths(words)


@pytest.mark.parametrize("kind", [PARSE, STATIC])
def test_expensive_commands_parse_and_name_existing_files(kind: str) -> None:
    checked = 0
    for _, command in shell_commands():
        if COMMANDS[key(command)][0] != kind:
            continue
        words = shlex.split(fill(command), comments=True)
        (_parse if kind == PARSE else _static)(words, command)
        checked += 1
    assert checked, f"no README command of kind {kind}"


def test_ros2_launch_lines_show_their_arguments_where_ros2_is_installed(
        scratch: Path, reader_env: dict[str, str]) -> None:
    """``ros2 launch`` lines run with ``--show-args`` where the venv has the ros2 CLI.

    ``make setup ROS2_UPSTREAM=<ros2-upstream>`` installs it; the launch file loads and
    lists its arguments, nothing starts.
    """
    if not (ROOT / ".venv" / "bin" / "ros2").exists():
        pytest.skip("the ros2 CLI is not in .venv (make setup ROS2_UPSTREAM=<ros2-upstream>)")
    launches = [c for _, c in shell_commands() if key(c).startswith("ros2 launch ")]
    assert launches
    for command in launches:
        words = shlex.split(command, comments=True)
        proc = subprocess.run(
            ["bash", "-c", f"cd {scratch} && source .venv/bin/activate && "
                           f"{shlex.join(words)} --show-args"],
            env=reader_env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "weights_dir" in proc.stdout, (
            f"{command} --show-args:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
