"""DDS transport settings that every alpamayo_ros process applies before ``rclpy.init``.

Seven 448x280 rgb8 cameras at 10 Hz lose frames with Fast DDS defaults (its shared-memory
segment is 512 KB). :func:`configure_dds_transport` points Fast DDS at
``config/fastdds_large_data.xml`` (32 MB segment) unless the user already chose a profile
or transport, or runs another RMW. The launch files apply the same setting.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from alpamayo_ros.paths import config_path

PROFILE_FILE_NAME = "fastdds_large_data.xml"
# Variables through which a user already configures Fast DDS; we never override them.
USER_FASTDDS_VARIABLES = (
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
    "FASTDDS_BUILTIN_TRANSPORTS",
)


def configure_dds_transport(env: MutableMapping[str, str] | None = None) -> str | None:
    """Apply the large-data Fast DDS profile to ``env`` (default ``os.environ``).

    Returns the profile path applied, or None when the user's own settings (or a non
    Fast DDS RMW) take precedence. Must run before the RMW creates its participant.
    """
    env = os.environ if env is None else env
    rmw = env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not rmw.startswith("rmw_fastrtps"):
        return None
    if any(env.get(name) for name in USER_FASTDDS_VARIABLES):
        return None
    path = str(config_path(PROFILE_FILE_NAME))
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = path
    return path
