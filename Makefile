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

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pathatlas demo

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
