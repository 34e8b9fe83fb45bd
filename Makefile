# Quick start: `make demo` (set up, fine-tune on real images, compile, predict, bench) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
FASHION_MNIST := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO := demo-out

.PHONY: setup test lint demo data sshd chromium clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e ".[workstation,dev,litert,video,serve]"
	@# The tritonserver binary `edgekit serve` runs. --no-deps: PyTriton pins numpy<2 for its Python proxy, which
	@# edgekit does not use (edgekit/serve/tritonserver.py).
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -c constraints.txt nvidia-pytriton
	touch $(STAMP)

# Real labelled images (Debian's dataset-fashion-mnist), installed when missing.
data:
	@test -f $(FASHION_MNIST) || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist)

# A real OpenSSH server for the devices-over-SSH tests (they start their own on 127.0.0.1).
sshd:
	@test -x /usr/sbin/sshd || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q openssh-server openssh-client)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	@# The device side (scripts/device_modules.py: what predict/bench/inspect/doctor/build import) runs on
	@# Python 3.8 (JetPack 5); the workstation side on 3.10+.
	$(BIN)/vermin -q -t=3.8- --violations --no-tips $$($(BIN)/python scripts/device_modules.py)
	$(BIN)/ruff check -q --select FA100,FA102 $$($(BIN)/python scripts/device_modules.py)
	$(BIN)/vermin -q -t=3.10- --violations --no-tips edgekit
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_architecture.py -k "not run_side"
	@# The documentation site (mkdocs.yml): warnings are errors; built into a temporary directory, so no site/ is left.
	d=$$(mktemp -d) && $(BIN)/mkdocs build --strict --quiet --site-dir $$d; s=$$?; rm -rf $$d; exit $$s

# Debian's Chromium, headless, for the test that renders a report the way a browser does.
chromium:
	@test -x /usr/bin/chromium || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

test: $(STAMP) data sshd chromium lint
	@# test_architecture.py ran in lint, all but its run-side test (which needs the device install): not again.
	@# Two workers, a test file each at a time: a single run leaves a third of the machine idle (subprocesses
	@# starting, servers waiting). Costly session fixtures are made once for both (tests/conftest.made_once).
	$(BIN)/python -m pytest -q --durations=15 -n 2 --dist loadfile -k "not test_architecture or run_side"

# No ImageNet weights can be downloaded here, so the demo fine-tunes from scratch on 1,500 real
# Fashion-MNIST images at 96×96, which keeps it within 10 minutes on 2 cores. Its INT8 step uses
# ONNX Runtime's quantizer: on this briefly trained model it agreed with FP32 on 97.8 % of the demo's
# images against 92.6 % for OpenVINO+NNCF (measured 2026-11-25), and the budget guards the rest.
demo: $(STAMP) data
	rm -rf $(DEMO)
	$(BIN)/python scripts/fashion_mnist_folder.py $(DEMO)/val --split test --per-class 50
	$(BIN)/python scripts/fashion_mnist_folder.py $(DEMO)/calib --split train --per-class 26 --seed 7
	$(BIN)/edgekit finetune --data fashion-mnist --per-class 150 --val-per-class 30 --weights none \
		--mode finetune --epochs 4 --lr 0.05 --resize 110 --crop 96 --out $(DEMO)/googlenet-fashion.pt
	$(BIN)/edgekit compile $(DEMO)/googlenet-fashion.pt --target x86-cpu --precision int8 --calib $(DEMO)/calib \
		--backend onnxruntime --max-accuracy-drop 1.0 --val $(DEMO)/val --out $(DEMO)/bundle
	$(BIN)/edgekit predict $(DEMO)/bundle $(DEMO)/val/sneaker $(DEMO)/val/bag --top-k 2 | head -n 5
	$(BIN)/edgekit bench $(DEMO)/bundle --val $(DEMO)/val --iterations 50 --out $(DEMO)/bench
	$(BIN)/edgekit report $(DEMO)/bench/bench.json --out $(DEMO)/report
	@echo
	@echo "demo outputs:"
	@echo "  checkpoint  $(DEMO)/googlenet-fashion.pt"
	@echo "  bundle      $(DEMO)/bundle  (edgekit inspect $(DEMO)/bundle)"
	@echo "  benchmark   $(DEMO)/bench/bench.md and bench.json"
	@echo "  report      $(DEMO)/report/report.html  (open it in a browser; report.md beside it)"

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
