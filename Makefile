# The README's two commands: `make demo` and `make test`.
# The virtual environment lives in .venv and is rebuilt only when requirements.txt changes
# (the stamp file holds a copy of the requirements it was built from).
PYTHON_BOOT ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
DEMO_OUT ?= runs/demo
PYTEST_ARGS ?=

.PHONY: demo test venv clean-demo

venv: $(STAMP)

$(STAMP): requirements.txt
	@if [ -f $(STAMP) ] && cmp -s requirements.txt $(STAMP); then \
		touch $(STAMP); \
	else \
		echo "Setting up $(VENV) from requirements.txt (first time: a few minutes, ~6 GB)"; \
		[ -x $(PY) ] || $(PYTHON_BOOT) -m venv $(VENV); \
		$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt && \
		cp requirements.txt $(STAMP); \
	fi

demo: venv
	$(PY) -m tools.demo --out $(DEMO_OUT)

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

clean-demo:
	rm -rf $(DEMO_OUT)
