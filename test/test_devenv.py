"""The checkout's venv: the ``alpamayo`` launcher and the activate hook (alpamayo_ros/devenv.py).

``python -m alpamayo_ros`` with the venv activated runs in test_readme_commands.py (the
README's usability block).
"""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

from alpamayo_ros import devenv

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def _clean_env() -> dict[str, str]:
    """The environment of a fresh shell: none of the Makefile's RUN_ENV variables."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def scratch_venv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("venv") / "v"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
    return path


def test_install_is_idempotent_and_hook_round_trips(scratch_venv: Path) -> None:
    devenv.install(scratch_venv)
    devenv.install(scratch_venv)
    activate = (scratch_venv / "bin" / "activate").read_text()
    assert activate.count(devenv.BEGIN) == 1 and activate.count(devenv.END) == 1
    launcher = scratch_venv / "bin" / "alpamayo"
    assert os.access(launcher, os.X_OK)
    assert launcher.read_text().startswith(f"#!{scratch_venv}/bin/python\n")
    script = f"""
        export PYTHONPATH=/keep
        unset AMENT_PREFIX_PATH
        before_path="$PATH"
        source {scratch_venv}/bin/activate
        echo "active $PYTHONPATH|$AMENT_PREFIX_PATH|$CMAKE_PREFIX_PATH"
        source {scratch_venv}/bin/activate
        echo "again $PYTHONPATH|$AMENT_PREFIX_PATH"
        deactivate
        echo "after $PYTHONPATH|${{AMENT_PREFIX_PATH-unset}}|${{CMAKE_PREFIX_PATH-unset}}"
        [ "$PATH" = "$before_path" ] && echo "path restored"
        type _alpamayo_restore >/dev/null 2>&1 || echo "hook functions removed"
    """
    out = subprocess.run(["bash", "-c", script], env=_clean_env(), capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == [
        f"active {ROOT}:/keep|{scratch_venv}|{scratch_venv}",
        f"again {ROOT}:/keep|{scratch_venv}",
        "after /keep|unset|unset",
        "path restored",
        "hook functions removed",
    ]


def test_install_refuses_a_directory_that_is_not_a_venv(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a virtualenv"):
        devenv.install(tmp_path)


def test_hook_refuses_paths_the_shell_would_expand(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quote"):
        devenv.hook_text(tmp_path / "a$b")


def _require_setup() -> None:
    if not (VENV / "bin" / "alpamayo").is_file():
        pytest.fail(f"{VENV}/bin/alpamayo is missing: run make setup (it writes the launcher)")


def test_venv_launcher_runs_this_checkout_from_anywhere(tmp_path: Path) -> None:
    _require_setup()
    code = ("import os, alpamayo_ros.cli as c; print(c.__file__); "
            "print(os.environ['PYTHONPATH'].split(os.pathsep)[0]); "
            "print(os.environ['AMENT_PREFIX_PATH'].split(os.pathsep)[0])")
    proc = subprocess.run([str(VENV / "bin" / "alpamayo"), "up", "policy", "--show-args"],
                          cwd=tmp_path, env=_clean_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    # the bring-ups default to the shipped weights, and --show-args says where they are
    assert f"empty weights_dir here = {ROOT / 'weights' / 'default'} (found)" in proc.stdout
    env = _clean_env()
    probe = subprocess.run(
        ["bash", "-c", f"source {VENV}/bin/activate && cd {tmp_path} && "
                       f"python -c \"{code}\""],
        env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.splitlines()
    assert lines == [str(ROOT / "alpamayo_ros" / "cli.py"), str(ROOT), str(VENV)]


@pytest.mark.parametrize("script", ["venv", "train", "policy_node", "controller_node",
                                    "camera_sync_node", "sim_node", "bag_player",
                                    "bag_recorder"])
def test_launchers_do_nothing_when_imported_by_a_spawned_worker(scratch_venv: Path,
                                                                script: str) -> None:
    # multiprocessing's spawn start method imports the parent's main file again as
    # __mp_main__ in every worker (alpamayo dataset build --workers 2 did, and each worker
    # ran the whole command again until the pool broke): the launchers must be guarded.
    devenv.install(scratch_venv)
    path = scratch_venv / "bin" / "alpamayo" if script == "venv" else ROOT / "scripts" / script
    code = ("import runpy, sys; sys.argv = ['x', '--help']; "
            f"runpy.run_path({str(path)!r}, run_name='__mp_main__'); print('imported')")
    proc = subprocess.run([str(VENV / "bin" / "python"), "-c", code], env=_clean_env(),
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "imported", proc.stdout
