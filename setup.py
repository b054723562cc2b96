"""Pure-Python install of alpamayo_ros (training, evaluation, data engine, CLI).

ROS users build with colcon: the package is ament_cmake (CMakeLists.txt) because it
generates its own messages. This setup.py serves `pip install .` on machines that train
or evaluate without a ROS workspace; the ROS nodes additionally need the generated
messages (see README.md).
"""

from setuptools import find_packages, setup

setup(
    name="alpamayo_ros",
    version="0.1.0",
    description="Reasoning VLA driving policy (Alpamayo-R1 design) for ROS 2",
    license="Apache-2.0",
    packages=find_packages(include=["alpamayo_ros", "alpamayo_ros.*"], exclude=["alpamayo_ros.msg"]),
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.26",
        "pyyaml>=6",
        "opencv-python-headless>=4.9,<5",
        "safetensors>=0.4",
        "tqdm>=4.66",
        "rosbags>=0.10",
    ],
    extras_require={"model": ["torch==2.13.0"]},
    entry_points={"console_scripts": ["alpamayo = alpamayo_ros.cli:main"]},
)
