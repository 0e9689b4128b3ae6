# Set-up and everyday commands. `make run` and `make test` work on a fresh machine: each creates
# .venv and installs what it needs first.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test lint format clean java-deps

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch goes in first and pinned, so that no later requirement pulls a multi-GB CUDA build.
$(VENV)/.run-deps: requirements.txt | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements-dev.txt $(VENV)/.run-deps
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.run-deps
	$(PY) chatglm_service_flask.py $(ARGS)

test: $(VENV)/.dev-deps java-deps /usr/bin/chromium
	$(PY) -m ruff check .
	$(PY) -m pytest

# The Java client's tests compile it against Debian's OkHttp, Okio and Gson jars (no Maven here);
# what is missing is installed with apt, as root, the way CI installs everything else.
JAVA_JARS := /usr/share/java/okhttp.jar /usr/share/java/okio.jar /usr/share/java/gson.jar
java-deps:
	@if ! command -v javac >/dev/null || ! ls $(JAVA_JARS) >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 \
			default-jdk-headless libokhttp-java libokio-java libgoogle-gson-java; \
	fi

lint: $(VENV)/.dev-deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(VENV)/.dev-deps
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) .pytest_cache test-output

# The chat page: its browser tests drive Debian's chromium, which a fresh CI machine (root) lacks; the
# CJK and emoji fonts make their screenshots show Chinese and emoji. `make vendor` refreshes the
# JavaScript libraries in static/vendor/ from npm.
.PHONY: vendor

/usr/bin/chromium:
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-wqy-microhei fonts-noto-color-emoji

vendor:
	scripts/vendor-js.sh
