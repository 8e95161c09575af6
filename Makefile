# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the project's tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.xai-harness-installed
export HF_HUB_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install demo test test-all clean-reports

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $(STAMP)

install: $(STAMP)

# Trains resnet18 on first use (CPU profile, about 2 minutes), then runs the pneumothorax suite.
demo: install
	$(PY) -m pytest suites/ --model resnet18

# The project's tests (slow end-to-end training tests are marked and run too: they fit CI's budget).
test: install
	$(PY) -m pytest tests/ -q

clean-reports:
	find reports -mindepth 1 -maxdepth 1 ! -name README.md ! -name .gitignore -exec rm -rf {} +
