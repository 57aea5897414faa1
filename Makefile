# ldm-lab: `make demo` runs the main job, `make test` runs the whole test suite (both from a fresh clone).
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.setup-stamp
TORCH   := torch==2.14.1 torchvision==0.29.1

.PHONY: setup browser test demo lab lint bench gpu-check device-wheels clean-venv

setup: $(STAMP)

# Debian's Chromium for the real-browser JupyterLab test (tests/test_browser.py skips, naming it, without it).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: install Debian's chromium (apt-get install -y chromium) for the browser test"; fi; }

# Rebuilt only when the project metadata changes: a second `make setup` is a no-op.
$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade "pip>=24"
	$(VPY) -c "import torch, torchvision" 2>/dev/null || $(VPY) -m pip install --quiet $(TORCH)
	$(VPY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

test: setup browser
	$(VPY) -m pytest -q

lint: setup
	$(VPY) -m ruff check ldm ldm_lab tests benchmarks scripts

bench: setup
	$(VPY) benchmarks/sampling.py
	$(VPY) benchmarks/throughput.py --task inpainting --images 8 --batch 4 --steps 10 --resolution 256

# On a CUDA machine: the runners' sampling path per variant (fp32 per-image / batched / bf16 / channels_last /
# torch.compile), peak memory, deviation from fp32 per-image, then runner throughput -> reports/gpu_check/.
gpu-check: setup
	benchmarks/gpu_check.sh

# Wheels of what the lent GPU machines' Python (3.12, torch preinstalled, no network) lacks for
# benchmarks/gpu_check.sh; the device call carries .whl and the script installs them (see README).
DEVICE_WHEELS = omegaconf==2.4.0
device-wheels:
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl $(DEVICE_WHEELS)
	@ls .whl

demo: setup
	$(VENV)/bin/ldm-lab demo

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=.

clean-venv:
	rm -rf $(VENV)
