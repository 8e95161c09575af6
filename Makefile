# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the project's tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.xai-harness-installed
export HF_HUB_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install demo test test-all clean-reports chromium

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $(STAMP)

install: $(STAMP)

# Trains resnet18 on first use (CPU profile: 43 s on the idle 2-core machine, README), then runs the suites (about 3 min in all).
demo: install
	$(PY) -m pytest suites/ --model resnet18

# The project's tests (slow end-to-end training tests are marked and run too: they fit CI's budget).
test: install chromium
	$(PY) -m pytest tests/ -q

# Best effort, never fails the build: Debian's chromium for the HTML report's screenshot test (it
# skips, with the reason, when chromium is missing or cannot start). Needs root and apt-get.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "chromium not installed (no root or apt-get): the HTML screenshot test will skip"

clean-reports:
	find reports -mindepth 1 -maxdepth 1 ! -name README.md ! -name .gitignore -exec rm -rf {} +
