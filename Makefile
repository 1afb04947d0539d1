# RAVLT suite. Every target sets up what it needs on first use, in stages:
#   install      the core (torch, timm, Lightning, Hydra, W&B, ...): classification, flops, rank, bench
#   install-mm   + the OpenMMLab stack, mmcv compiled once: detection and segmentation
#   install-all  + the test tools: make test
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK ?= requirements/lock.txt
CORE_STAMP := $(VENV)/.ravlt-core
MM_STAMP := $(VENV)/.ravlt-mm
ALL_STAMP := $(VENV)/.ravlt-installed
PIP := $(PY) -m pip --disable-pip-version-check
# A pip configured with local index folders (extra-index-url=file://...) warns once for every package a
# folder lacks; that says nothing about our install, so it is dropped. Every other message stays.
PIP_LOG := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
export PYTHONUNBUFFERED := 1
export WANDB_MODE ?= offline
export HYDRA_FULL_ERROR ?= 0

.PHONY: install install-mm install-all demo lint test test-fast bench flops rank rehearse det-demo seg-demo det-coco seg-ade20k clean lock

install: $(CORE_STAMP)
install-mm: $(MM_STAMP)
install-all: $(ALL_STAMP)

# Each stage reruns only when the dependency spec changes; requirements/lock.txt pins the tested set.
$(CORE_STAMP): pyproject.toml $(LOCK)
	@echo "install: core packages into $(VENV) (torch, timm, Lightning, Hydra, W&B; 1-2 minutes the first time)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 'setuptools<82' wheel $(PIP_LOG)
	$(PIP) install -q -c $(LOCK) -e . $(PIP_LOG)
	$(PY) -c "import ravlt, torch, lightning; print('ravlt core install OK: torch', torch.__version__, 'lightning', lightning.__version__)"
	touch $@

# mmcv's wheel is compiled once and cached under ~/.cache/ravlt/wheels (tools/build_mmcv.sh announces the
# build and its expected length, then shows its progress); later installs and CI reuse it.
$(MM_STAMP): $(CORE_STAMP) tools/build_mmcv.sh
	bash tools/build_mmcv.sh $(PY)
	$(PIP) install -q -c $(LOCK) -e '.[mm]' $(PIP_LOG)
	$(PY) -c "import ravlt.mm, mmcv.ops, mmdet, mmseg; print('ravlt OpenMMLab install OK: mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'mmseg', mmseg.__version__)"
	touch $@

$(ALL_STAMP): $(MM_STAMP)
	$(PIP) install -q -c $(LOCK) -e '.[mm,dev]' $(PIP_LOG)
	touch $@

# The README's main job: RAVLT-T on the embedded digits dataset, CPU.
demo: install
	$(PY) train.py task=classification model=ravlt_t dataset=digits hardware=cpu logger=csv experiment=digits_demo

# The tests run side by side in TEST_WORKERS processes (pytest-xdist), each with its share of the cores
# (tests/conftest.py); on 2 cores that took the suite from about 40 to 23 minutes, with at most 13 GB of
# memory in use (README, Tests). Raise it only where cores and memory allow; TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest tests -n $(TEST_WORKERS) --dist worksteal

# pycodestyle, pyflakes, import order and bugbear (pyproject.toml, [tool.ruff]); a second, before the tests.
lint: install-all
	$(PY) -m ruff check .

test: lint
	$(PYTEST)

test-fast: lint
	$(PYTEST) -m "not slow"

flops: install
	$(PY) -m ravlt.tools.flops

rank: install
	$(PY) -m ravlt.analysis.rank --model ravlt_t --out outputs/rank $(ARGS)

bench: install
	$(PY) -m ravlt.bench --stages --ops

# The paper's 25 runs as shipped, a few CPU steps each: train, checkpoint, resume, evaluate (README, "Rehearsal").
# ARGS="--runs 'upernet-*'" picks runs; python -m ravlt.rehearse --help lists them.
rehearse: install-mm
	$(PY) -m ravlt.rehearse $(ARGS)

det-demo: install-mm
	$(PY) train.py task=detection model=ravlt_t detector=mask_rcnn_demo dataset=shapes_coco hardware=cpu logger=csv

seg-demo: install-mm
	$(PY) train.py task=segmentation model=ravlt_t segmentor=fpn_demo dataset=shapes_ade hardware=cpu logger=csv

det-coco: install-mm
	$(PY) train.py task=detection model=ravlt_s detector=mask_rcnn_1x dataset=coco $(ARGS)

seg-ade20k: install-mm
	$(PY) train.py task=segmentation model=ravlt_s segmentor=upernet_160k dataset=ade20k $(ARGS)

# Refresh the tested version set (from a full install: make install-all) after changing pyproject.toml.
lock: install-all
	$(PIP) freeze --exclude-editable | grep -v '^-e' \
	  | sed 's|^onedl-mmcv @ .*|onedl-mmcv==2.3.6|' > $(LOCK)

clean:
	rm -rf outputs multirun .pytest_cache
