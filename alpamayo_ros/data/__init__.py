"""The data engine: a 2.5D driving world, an expert driver, CoC labels, cameras and bags.

Layers, from the bottom: :mod:`.world` (roads, map elements, agents and their
behaviour), :mod:`.expert` (the privileged driver that makes each decision and names its
cause), :mod:`.scenarios` (seeded scenario families covering every AR1 decision),
:mod:`.coc` and :mod:`.text` (Chain-of-Causality keyframes, components and varied
reasoning text), :mod:`.consistency` (CoC <-> trajectory meta-action checker reused by
training and evaluation), :mod:`.cameras` and :mod:`.render` (pinhole rig and a polygon
renderer), :mod:`.bag` (rosbag2 MCAP writer/reader), :mod:`.dataset` (DrivingSample view
and npy cache), :mod:`.mosaic` (a picture to check) and :mod:`.autolabel` (VLM labeler
for real logs). Nothing here imports rclpy or message packages.
"""
