"""The AR1-style policy model (pure torch core, no ROS).

Public entry points: :class:`alpamayo_ros.model.policy.Policy` (load/predict/save),
:mod:`alpamayo_ros.model.configuration` (presets), :mod:`alpamayo_ros.model.modeling`
(the network and its training losses). Import them from their modules; this package
imports nothing heavy so the CLI can list commands without torch.
"""
