"""alpamayo_ros: a reasoning vision-language-action driving policy for ROS 2.

The package follows the Alpamayo-R1 design: synchronized multi-camera video in, a
Chain-of-Causality explanation and a 6.4 s trajectory out, decoded by a flow-matching
action expert and checked by a safety monitor before a controller acts on it.

Generated messages (``alpamayo_ros.msg``) are installed by the ament_cmake build into
the same Python package. When this source checkout shadows an installed copy (the
development setup of ``make``), ``extend_path`` lets ``alpamayo_ros.msg`` resolve to the
generated code while every other module comes from the checkout.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
