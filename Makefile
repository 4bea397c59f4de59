# UGen Cluster — the two commands a newcomer needs: `make demo` and `make test`.
# `make deps` installs what is missing (Debian packages via apt-get when run as root; Python checkers via pip).

SWIFT      ?= swift
APT_PKGS   := libzmq3-dev libhdf5-dev libopenblas-dev libdnnl-dev libpng-dev pkg-config fortunes
PIP_PKGS   := h5py numpy safetensors
BIN        := .build/debug
RELEASE    := .build/release
DEMO_RUN   ?= runs/demo

.PHONY: lint deps build release data test-data data-images data-demo check-data-images check-image-extraction image-deps bench-data demo test bench bench-pytorch bench-bf16-loss bench-data-parallel clean cluster-checks fixtures

deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing Debian packages:$$missing (run as root or: sudo apt-get install$$missing)"; exit 1; fi; \
	fi
	@python3 -c "import h5py, numpy, safetensors" 2>/dev/null || python3 -m pip install -q $(PIP_PKGS)

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Real data, fetched offline from the two registries this machine reaches (see Documentation/data.md).
# Made once: delete data/tokenized to make it again.
DATA_ARGS  := --text-vocab 1024 --codebook 64 --patch 2 --seed 1
data: release
	@[ -f data/tokenized/train.h5 ] || UGEN=$(RELEASE)/ugen bash cluster/data/prepare.sh $(DATA_ARGS)

# Captioned colour emoji + Fashion-MNIST + fortunes (Documentation/data.md), offline from three Debian packages
# (about 49 MB to download, so not in APT_PKGS; libfribidi0 lets Pillow's wheel shape emoji sequences) and Pillow: data/images/, data/images-tokenized/. Made once.
IMAGE_APT  := fonts-noto-color-emoji unicode-data dataset-fashion-mnist libfribidi0
data-images: release image-deps
	@[ -f data/images-tokenized/train.h5 ] || UGEN=$(RELEASE)/ugen bash cluster/data/prepare-images.sh

# What the image scripts need beyond deps: the Debian packages of IMAGE_APT (the demo passes its smaller list) and Pillow.
image-deps:
	@$(MAKE) --no-print-directory deps APT_PKGS="$(APT_PKGS) $(IMAGE_APT)"
	@python3 -c "import PIL" 2>/dev/null || python3 -m pip install -q pillow

# The demo's data: 142 colour emoji with their names + the fortune-cookie sayings (cluster/data/prepare-demo.sh; ~15 s; the emoji
# font and names are about 18 MB of Debian packages, so they are installed here rather than in APT_PKGS). Made once;
# the script remakes it when its text files or arguments change.
DEMO_APT   := fonts-noto-color-emoji unicode-data libfribidi0
data-demo: build
	@$(MAKE) --no-print-directory image-deps IMAGE_APT="$(DEMO_APT)"
	@UGEN=$(BIN)/ugen bash cluster/data/prepare-demo.sh

# Counts what data-images extracted: every fully-qualified emoji of emoji-test.txt, 70,000 Fashion-MNIST images.
check-data-images:
	python3 cluster/data/images.py --check data/images

# The same counts on the real packages, for make test: extracts into a scratch folder (about 25 s; it refuses if one
# emoji of the test file maps to no single glyph or Fashion-MNIST is not 70,000 images), recounts, removes it.
# The unit tests cover the parsing on a made-up excerpt; this is the one check that needs the 49 MB of packages.
check-image-extraction: image-deps
	@d=$$(mktemp -d) && python3 cluster/data/images.py --out "$$d" && python3 cluster/data/images.py --check "$$d"; \
	  rc=$$?; rm -rf "$$d"; exit $$rc

# The same data made by the debug build the tests use (10 s; spares CI a release build).
test-data:
	@[ -f data/tokenized/train.h5 ] || UGEN=$(BIN)/ugen bash cluster/data/prepare.sh $(DATA_ARGS)

# A real training job: coordinator + 2 local workers, 2 pipeline stages, 1,000 steps on the demo's emoji and text
# (configs/demo.yaml, bf16, the debug build make test uses); then draws 8 images for each of four captions into
# $(DEMO_RUN)/samples/*.png (caption at the left) and prints a saying it writes after each of the five commonest
# first words of the sayings (seed 1).
DEMO_CAPTIONS := "red apple" "blue heart" "grinning face" "sunflower"
DEMO_PROMPTS  := "You" "Your" "Don't" "You're" "A"
demo: data-demo
	$(BIN)/ugen-coord start --config configs/demo.yaml --run $(DEMO_RUN) --local-workers 2
	@mkdir -p $(DEMO_RUN)/samples; for c in $(DEMO_CAPTIONS); do \
	  $(BIN)/ugen generate --checkpoint $(DEMO_RUN)/checkpoints/latest --caption "$$c" --grid 8 --temperature 0.8 --seed 1 \
	    --out "$(DEMO_RUN)/samples/$$(echo $$c | tr ' ' -).png" || exit 1; done
	@for p in $(DEMO_PROMPTS); do t=$$($(BIN)/ugen generate --checkpoint $(DEMO_RUN)/checkpoints/latest --prompt "$$p" \
	    --temperature 0.7 --top-p 0.9 --seed 1) || exit 1; echo "text: $$t"; done

# swift-format (ships with the toolchain) against .swift-format, strict: any finding fails, over every Swift
# file (`swift format format -i -r Sources Tests` fixes most findings). Lines stay within 140 columns, functions
# within 60 lines unless the comment above says why ("on purpose"), files within 500 (cluster/checks/lengths.py).
lint:
	$(SWIFT) format lint --strict --recursive Sources Tests
	@! grep -rn --include='*.swift' '.\{141,\}' Sources Tests || { echo "lines over 140 columns (above)"; exit 1; }
	@python3 cluster/checks/lengths.py Sources Tests

test: deps lint
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	$(MAKE) cluster-checks

# Remakes the PyTorch reference fixtures Tests/fixtures/tiny-llama-{a,b}.h5 (a few seconds; byte-identical on
# every run). PyTorch is needed only here, never by the tests, which read the committed files. The script checks
# itself against HuggingFace LlamaForCausalLM and writes nothing if they disagree.
FIXTURE_PIP := torch==2.13.0 transformers==5.24.0 h5py numpy
fixtures:
	@python3 -c "import torch, transformers, h5py, numpy" 2>/dev/null || python3 -m pip install -q $(FIXTURE_PIP)
	python3 Tests/python/make_fixture.py Tests/fixtures

# Real Slurm, several hosts (network namespaces), random worker kills, the web dashboard in headless Chromium:
# root, installs slurm/munge/iproute2/chromium when missing; about a minute.
cluster-checks: test-data check-image-extraction
	UGEN_BIN=$(CURDIR)/$(BIN) bash cluster/slurm/check.sh
	UGEN_BIN=$(CURDIR)/$(BIN) bash cluster/netns/check.sh
	BIN=$(BIN) bash cluster/chaos.sh
	DASHBOARD="$(BIN)/ugen-coord dashboard" bash cluster/dashboard-check.sh

# Config S's own vocabulary (V = 4096 = 4026 text ids + 6 specials + 64 image codes) over the same raw data,
# for the pipeline benchmark of config S.
BENCH_DATA := data/bench-s
bench-data: data
	@[ -f $(BENCH_DATA)/train.h5 ] || $(RELEASE)/ugen tokenize --text data/raw/fortunes/* --pairs data/digits/pairs.jsonl \
	  --out $(BENCH_DATA) --text-vocab 4026 --codebook 64 --patch 2 --seed 1

bench: release bench-data
	$(RELEASE)/ugen bench
	$(RELEASE)/ugen-coord bench --data-dir $(BENCH_DATA)
	$(RELEASE)/ugen-coord bench --data-dir $(BENCH_DATA) --part pipeline --precision bf16

# The same model in PyTorch (fp32 and bf16 autocast) and in ugen (fp32 and bf16), rounds interleaved in one
# run; installs the CPU build of torch when missing. A benchmark only: no test needs PyTorch.
bench-pytorch: release
	@python3 -c "import torch" 2>/dev/null || python3 -m pip install -q torch==2.13.0
	python3 cluster/bench/pytorch_side_by_side.py --ugen $(RELEASE)/ugen --configs S M --threads 2

# bf16 against fp32 over a 300-step run on the bundled data (plot: Documentation/bf16-vs-fp32.png).
bench-bf16-loss: data
	COORD=$(RELEASE)/ugen-coord bash cluster/bench/bf16-vs-fp32.sh 300

# Data parallelism on tc-shaped links between network-namespace hosts (root): bytes per replica, reduce
# time against the bandwidth model, share hidden behind compute (Documentation/benchmarks.md).
bench-data-parallel: release data
	UGEN_BIN=$(CURDIR)/$(RELEASE) bash cluster/bench/data-parallel.sh

clean:
	rm -rf .build data runs
