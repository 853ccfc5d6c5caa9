# The README's two commands: `make demo` and `make test`.
# The virtual environment lives in .venv and is rebuilt only when a requirements file changes
# (each stamp file holds a copy of the requirements it was built from). `make demo` installs the
# runtime pins (requirements.txt); `make test` adds the test pins (requirements-test.txt).
PYTHON_BOOT ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
TEST_STAMP := $(VENV)/.requirements-test.stamp
DEMO_OUT ?= runs/demo
PYTEST_ARGS ?=

.PHONY: demo test venv venv-test clean-demo

venv: $(STAMP)

venv-test: $(TEST_STAMP)

$(STAMP): requirements.txt
	@if [ -f $(STAMP) ] && cmp -s requirements.txt $(STAMP); then \
		touch $(STAMP); \
	else \
		echo "Setting up $(VENV) from requirements.txt (first time: a few minutes, ~6 GB; pip names each package as it goes)"; \
		[ -x $(PY) ] || $(PYTHON_BOOT) -m venv $(VENV); \
		$(PY) -m pip install --disable-pip-version-check -r requirements.txt && \
		cp requirements.txt $(STAMP) && echo "$(VENV) ready"; \
	fi

$(TEST_STAMP): $(STAMP) requirements-test.txt
	@if [ -f $(TEST_STAMP) ] && cat requirements.txt requirements-test.txt | cmp -s - $(TEST_STAMP); then \
		touch $(TEST_STAMP); \
	else \
		echo "Adding the test pins (requirements-test.txt) to $(VENV)"; \
		$(PY) -m pip install --disable-pip-version-check -r requirements-test.txt && \
		cat requirements.txt requirements-test.txt > $(TEST_STAMP); \
	fi

demo: venv
	$(PY) -m tools.demo --out $(DEMO_OUT)

test: venv-test
	$(PY) -m pytest $(PYTEST_ARGS)

clean-demo:
	rm -rf $(DEMO_OUT)
