"""``alpamayo up <bring-up> [name:=value ...]``: start a bring-up without ``ros2 launch``.

Reads the same graph definition as ``launch/*.launch.py`` (:mod:`alpamayo_ros.graph`) and
starts each process the way ``ros2 launch`` would: ``python -m <module> [cli args]
--ros-args --params-file <share>/config/<file> ... -p <param>:=<value>``.
Every line a process prints is prefixed with its node name. Like a launch file whose
nodes are all required, the bring-up stops when any process exits with an error, and
Ctrl-C (SIGINT) or SIGTERM stops every process (SIGINT, then SIGKILL after a grace
period). The exit code is 0 when every process ended with 0, else the first failure's
(128 + N for a process killed by signal N). ``--dry-run`` prints the commands.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from alpamayo_ros import graph
from alpamayo_ros.paths import default_weights_dir, share_dir
from alpamayo_ros.ros.lifetime import die_with_parent


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["a:=1", "b:=x"]`` -> ``{"a": "1", "b": "x"}`` (the ``ros2 launch`` syntax)."""
    out = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"launch arguments are name:=value, got {item!r}")
        out[name] = value
    return out


def node_command(spec: graph.NodeSpec, values: dict[str, str],
                 python: str = sys.executable) -> list[str]:
    """The command line that runs ``spec`` with resolved argument ``values``."""
    cmd = [python, "-m", spec.module]
    for arg in spec.cli_args:
        cmd.append(values[arg[1:-1]] if arg.startswith("{") and arg.endswith("}") else arg)
    cmd += ["--ros-args"]
    for name in spec.params_files:
        cmd += ["--params-file", str(share_dir() / "config" / name)]
    for param, arg in spec.arg_params.items():
        value = values[arg]
        if value == "":
            continue  # an unset string argument keeps the YAML/dataclass default
        cmd += ["-p", f"{param}:={value}"]
    return cmd


def _pump(name: str, stream, lock: threading.Lock) -> None:
    for line in iter(stream.readline, ""):
        with lock:
            sys.stdout.write(f"[{name}] {line}")
            sys.stdout.flush()


def up(bringup: str, values: dict[str, str], dry_run: bool = False,
       grace_s: float = 10.0) -> int:
    """Start every process of ``bringup``; return when they end (non-zero on failure)."""
    resolved = graph.resolve(bringup, values)
    specs = graph.nodes(bringup)
    commands = [(spec, node_command(spec, resolved)) for spec in specs]
    if dry_run:
        for spec, cmd in commands:
            print(f"{spec.name}: {' '.join(cmd)}")
        return 0
    from alpamayo_ros.ros.transport import configure_dds_transport

    env = dict(os.environ)
    configure_dds_transport(env)
    env["PYTHONUNBUFFERED"] = "1"
    lock = threading.Lock()
    procs: list[tuple[graph.NodeSpec, subprocess.Popen]] = []
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        for spec, cmd in commands:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True, preexec_fn=die_with_parent)
            threading.Thread(target=_pump, args=(spec.name, proc.stdout, lock),
                             daemon=True).start()
            procs.append((spec, proc))
        print(f"[alpamayo up] {bringup}: started "
              f"{', '.join(f'{s.name} (pid {p.pid})' for s, p in procs)}", flush=True)
        while not stopping.is_set():
            for spec, proc in procs:
                rc = proc.poll()
                if rc is not None:
                    print(f"[alpamayo up] {spec.name} exited with {rc}; stopping the bring-up",
                          flush=True)
                    code = _exit_status(rc)
                    stopping.set()
                    break
            stopping.wait(0.2)
    finally:
        running = [(spec, proc) for spec, proc in procs if proc.poll() is None]
        for _, proc in running:
            proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + grace_s
        for spec, proc in running:
            try:
                rc = proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                print(f"[alpamayo up] {spec.name} still running {grace_s:g} s after SIGINT: "
                      "killing it", flush=True)
                proc.kill()
                rc = proc.wait()
            if rc != 0:
                print(f"[alpamayo up] {spec.name} exited with {rc} on shutdown", flush=True)
                code = code or _exit_status(rc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def _exit_status(returncode: int) -> int:
    """A child's return code as a process exit status (killed by signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``alpamayo up``."""
    parser.add_argument("bringup", choices=sorted(graph.BRINGUPS),
                        help="which graph to start (see alpamayo_ros/graph.py)")
    parser.add_argument("assignments", nargs="*", metavar="name:=value",
                        help="launch arguments, as for ros2 launch")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--show-args", action="store_true",
                        help="list the bring-up's arguments with defaults and descriptions")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``alpamayo up``."""
    if args.show_args:
        for a in graph.arguments(args.bringup):
            print(f"{a.name}:={a.default!r}  {a.description}")
            if a.name == "weights_dir" and not a.default:
                path = default_weights_dir()
                found = "found" if (path / "config.json").is_file() else "MISSING"
                print(f"    empty weights_dir here = {path} ({found})")
        return 0
    try:
        values = parse_assignments(args.assignments)
        return up(args.bringup, values, args.dry_run)
    except ValueError as exc:
        print(f"alpamayo up: {exc}", file=sys.stderr)
        return 2

