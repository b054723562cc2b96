"""DDS transport settings that every alpamayo_ros process applies before ``rclpy.init``.

Seven 448x280 rgb8 cameras at 10 Hz lose frames with Fast DDS defaults (its shared-memory
segment is 512 KB). :func:`configure_dds_transport` points Fast DDS at
``config/fastdds_large_data.xml`` (32 MB segment) unless the user already chose a profile
or transport, or runs another RMW. The launch files apply the same setting.

The controller process asks for UDP only (``shared_memory=False``). Fast DDS's
shared-memory transport can put the *sending* thread to sleep: when a writer opens the
port of a reader (a process that started or restarted), or reopens a port whose listener
stopped answering (a frozen or killed process), it checks the port's listeners and sleeps
a third of ``healthy_check_timeout_ms`` (1 s by default: 333 ms) per failed look, up to
the whole second (``SharedMemGlobal::Port::healthy_check``, Fast DDS 3.x). The controller
sends small messages at 50 Hz and must never stall because another process restarted;
UDP loopback has no such check. Its messages (commands, status, plans, odometry) are small.
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
UDP_ONLY = "UDPv4"  # a FASTDDS_BUILTIN_TRANSPORTS value: Fast DDS's UDPv4 transport alone


def configure_dds_transport(env: MutableMapping[str, str] | None = None,
                            shared_memory: bool = True) -> str | None:
    """Apply the package's Fast DDS transport to ``env`` (default ``os.environ``).

    ``shared_memory`` True: the large-data profile (its path is returned); False: UDP only
    (``FASTDDS_BUILTIN_TRANSPORTS=UDPv4``, returned as that assignment). The package's own
    profile, set by a parent process, is replaced in the second case. Returns None when
    the user's own settings (or a non Fast DDS RMW) take precedence. Must run before the
    RMW creates its participant.
    """
    env = os.environ if env is None else env
    rmw = env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not rmw.startswith("rmw_fastrtps"):
        return None
    path = str(config_path(PROFILE_FILE_NAME))
    if env.get("FASTDDS_DEFAULT_PROFILES_FILE") == path:  # ours, from a parent process
        if shared_memory:
            return path
        del env["FASTDDS_DEFAULT_PROFILES_FILE"]
    if any(env.get(name) for name in USER_FASTDDS_VARIABLES):
        return None
    if not shared_memory:
        env["FASTDDS_BUILTIN_TRANSPORTS"] = UDP_ONLY
        return f"FASTDDS_BUILTIN_TRANSPORTS={UDP_ONLY}"
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = path
    return path
