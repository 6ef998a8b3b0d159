# inrkit: `make demo` runs the demo on built-in data, `make test` runs the tests.
# Both create the virtual environment (.venv) on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
OUT    ?= out/demo

.PHONY: demo test test-slow lint bench clean venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,kpl]'
	touch $@

test: venv
	$(PY) -m pytest

test-slow: venv
	$(PY) -m pytest -m slow

lint: venv
	$(VENV)/bin/ruff check inrkit tests bench

# The demo: fit builtin:camera with Levels-of-Experts, then render it 2x denser and zoomed out.
demo: venv $(OUT)/camera.safetensors
	$(VENV)/bin/inrkit render $(OUT)/camera.safetensors --scale 2 --out $(OUT)/camera_x2.png
	$(VENV)/bin/inrkit render $(OUT)/camera.safetensors --grid=-0.3,1.3 --out $(OUT)/camera_zoomout.png
	@echo "demo pictures are in $(OUT)/"

$(OUT)/camera.safetensors: | venv
	$(VENV)/bin/inrkit fit builtin:camera --arch loe --size 256 --steps 400 --out $@

clean:
	rm -rf out
