"""rosbag2 (MCAP) playback and recording helpers on ``rosbags``: pure, no rclpy.

:mod:`alpamayo_ros.bags.config` (player/recorder parameters and flags),
:mod:`alpamayo_ros.bags.replay` (reading, topic selection, playback clock),
:mod:`alpamayo_ros.bags.record` (writing serialized messages). The nodes are
:mod:`alpamayo_ros.nodes.bag_player` and :mod:`alpamayo_ros.nodes.bag_recorder`.
"""
