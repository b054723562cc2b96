"""Build ``ros2 launch`` descriptions from :mod:`alpamayo_ros.graph` (needs ``launch_ros``).

``launch/<bring-up>.launch.py`` calls :func:`generate` with its bring-up name. Each
launch argument is declared with its description and default; each process gets the
bring-up's ``config/*.yaml`` files and the parameters bound to launch arguments, as
``alpamayo up`` passes them (values are YAML-typed in both, like ``-p name:=value``).
Every process is required: when one exits the launch shuts down. Node names come from
the code (the policy process runs two nodes, so no ``name=`` remap is applied).
``launch`` and ``launch_ros`` are imported here only, so the rest of the package works
where they are not installed.

Stopping a bring-up: SIGINT (Ctrl-C) to ``ros2 launch``; it sends SIGINT to every
process, which shut down cleanly with exit code 0. A ``ros2 launch`` started in the
background by a script inherits SIGINT as ignored and would not react to it:
:func:`generate` restores Python's default SIGINT handling in the launch process then.
SIGTERM makes ``ros2 launch`` exit at once without stopping its processes (upstream
behaviour); each of our nodes then receives SIGTERM from the kernel as its parent ended
(:mod:`alpamayo_ros.ros.lifetime`) and shuts down cleanly.
"""

from __future__ import annotations

import signal
import threading

from alpamayo_ros import graph
from alpamayo_ros.paths import share_dir


def restore_sigint() -> bool:
    """Handle SIGINT again in this (launch) process if it was inherited as ignored.

    ``launch`` reacts to signals through :func:`signal.set_wakeup_fd`, which only fires
    for a signal that has a Python handler. Returns whether it changed anything.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        return False
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return True


def generate(bringup: str):
    """The ``LaunchDescription`` of a bring-up."""
    restore_sigint()
    from launch.actions import DeclareLaunchArgument, Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    from launch import LaunchDescription

    actions: list = [DeclareLaunchArgument(a.name, default_value=a.default,
                                           description=a.description)
                     for a in graph.arguments(bringup)]
    config = share_dir() / "config"
    for spec in graph.nodes(bringup):
        parameters: list = [str(config / name) for name in spec.params_files]
        parameters += [{param: ParameterValue(LaunchConfiguration(arg))}
                       for param, arg in spec.arg_params.items()]
        cli = [LaunchConfiguration(a[1:-1]) if a.startswith("{") and a.endswith("}") else a
               for a in spec.cli_args]
        actions.append(Node(package=graph.PACKAGE, executable=spec.executable,
                            output="screen", parameters=parameters, arguments=cli,
                            on_exit=Shutdown()))
    return LaunchDescription(actions)
