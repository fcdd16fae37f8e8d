# Quick start: `make demo` (main job) and `make test` (the test suite). Both install what they need first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox \
	libsndfile1 libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins alsa-utils \
	gcc-arm-none-eabi qemu-user

.PHONY: install apt demo test bench clean peers

install: apt $(STAMP)

# Installs the speech-synthesis, audio and cross-compiler packages when root and any is missing.
apt:
	@bash scripts/install_apt.sh $(APT_PACKAGES)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned, so nothing resolves to a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,voices]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/kws demo

# the peers too, so their tests run rather than skip
test: install peers
	$(PY) -m pytest -q tests

# Peer systems for tools/peer_benchmark.py (optional): PocketSphinx, and openWakeWord 0.5.1 without
# its declared dependencies (they would pull tflite-runtime; its ONNX models run in onnxruntime).
PEERS_STAMP := $(VENV)/.peers-installed
peers: install $(PEERS_STAMP)

$(PEERS_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[peers]'
	$(PY) -m pip install -q --no-deps openwakeword==0.5.1
	touch $(PEERS_STAMP)

bench: install
	$(PY) tools/bench_all.py

clean:
	rm -rf $(VENV) build *.egg-info
