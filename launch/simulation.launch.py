"""`ros2 launch alpamayo_ros simulation.launch.py`: the 'simulation' bring-up.

It is defined in alpamayo_ros/graph.py; `alpamayo up simulation` starts the same processes where
ros2 launch is not installed. Arguments: `ros2 launch ... --show-args`.
"""

from alpamayo_ros.ros.launch_support import generate


def generate_launch_description():
    """The 'simulation' bring-up."""
    return generate("simulation")
