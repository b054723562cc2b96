#!/usr/bin/env bash
# Install the upstream ROS 2 packages that PyPI does not serve (launch, launch_ros,
# launch_testing, message_filters, tf2_ros, the ros2 command line) from a source folder
# like ../shared/ros2-upstream (see its README.md) into a virtualenv, so that a plain
# <venv>/bin/python imports them and <venv>/bin/ros2 runs. Called by `make setup` when
# ROS2_UPSTREAM is set; the Makefile stamps it.
#   usage: tools/install_ros2_upstream.sh UPSTREAM VENV
# - The compiled parts (composition_interfaces, tf2_msgs, tf2, tf2_py) are built by the
#   folder's build.sh with the venv as install prefix (its lib/ is on the library path of
#   every venv python: the ROS wheels' bootstrapper adds it).
# - The pure-Python packages are pip-installed as distributions (ros2cli finds its
#   commands, and launch its frontends, through entry points), built from a temporary copy
#   so that the source folder stays untouched.
# - launch_testing and launch_testing_ros are copied into site-packages as plain packages,
#   not as distributions: their pytest plugins (entry points) do not load under pytest 9
#   and would break every pytest run. Launch tests run with
#   `python -m launch_testing.launch_test FILE` (see test/test_launch_bringups.py).
#   launch_pytest (only a pytest plugin) is not installed.
set -euo pipefail
upstream=$(cd "$1" && pwd)
venv=$(cd "$2" && pwd)
python="$venv/bin/python"
site=$("$python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
log_dir=$(mktemp -d)
trap 'chmod -R u+w "$log_dir"; rm -rf "$log_dir"' EXIT

dists=(launch/launch launch/launch_xml launch/launch_yaml launch_ros/launch_ros
       launch_ros/ros2launch message_filters osrf_pycommon geometry2/tf2_ros_py
       ros2cli/ros2cli ros2cli/ros2pkg ros2cli/ros2run ros2cli/ros2topic ros2cli/ros2node
       ros2cli/ros2param ros2cli/ros2lifecycle ros2cli/ros2interface ros2cli/ros2service)
plain=(launch/launch_testing/launch_testing launch_ros/launch_testing_ros/launch_testing_ros)

for path in "${dists[@]}" "${plain[@]}" build.sh; do
  [ -e "$upstream/$path" ] || { echo "$upstream has no $path (see its README.md)" >&2; exit 1; }
done
# Optional: rosidl_runtime_py (pure Python; PyPI has no wheel) lets ros2 lifecycle, service,
# topic echo/pub and param run; without it those verbs fail to load.
if [ -f "$upstream/rosidl_runtime_py/setup.py" ]; then
  dists+=(rosidl_runtime_py)
else
  echo "ros2-upstream: no rosidl_runtime_py in $upstream: ros2 lifecycle/service/topic echo" \
       "will not load" >&2
fi

echo "ros2-upstream: build tools for tf2 (PyPI)" >&2
"$python" -m pip install --quiet --disable-pip-version-check ros-ament-cmake-ros \
  ros-ament-cmake-gmock ros-ament-cmake-gtest ros-ament-cmake-pytest > "$log_dir/pip.log" 2>&1 \
  || { grep -v "^WARNING: Location '" "$log_dir/pip.log" | tail -20 >&2; exit 1; }

echo "ros2-upstream: compiled packages (build.sh, about 1-2 min)" >&2
# build.sh prints the environment for a separate prefix; with the venv as prefix the
# venv's own paths already cover it.
bash "$upstream/build.sh" "$venv" "$venv" > /dev/null

echo "ros2-upstream: pure-Python packages" >&2
copy="$log_dir/src"
targets=()
for path in "${dists[@]}"; do
  mkdir -p "$copy/$path"
  cp -r "$upstream/$path/." "$copy/$path/"
  chmod -R u+w "$copy/$path"  # the source folder may be read-only
  rm -rf "$copy/$path/build" "$copy/$path"/*.egg-info
  targets+=("$copy/$path")
done
"$python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
  --no-index --force-reinstall "${targets[@]}" > "$log_dir/pip.log" 2>&1 \
  || { tail -30 "$log_dir/pip.log" >&2; exit 1; }
for path in "${plain[@]}"; do
  rm -rf "${site:?}/$(basename "$path")"
  cp -r "$upstream/$path" "$site/"
  chmod -R u+w "$site/$(basename "$path")"
done

AMENT_PREFIX_PATH="$venv" "$python" -c "
import launch, launch_ros.actions, launch_testing, launch_testing_ros, message_filters
import tf2_ros, ros2cli, ros2launch, ros2lifecycle
tf2_ros.Buffer()
"
echo "ros2-upstream: installed into $venv" >&2
