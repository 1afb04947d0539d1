# RAVLT suite. `make demo` and `make test` set everything up on first use (`make install`).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ravlt-installed
export PYTHONUNBUFFERED := 1
export WANDB_MODE ?= offline
export HYDRA_FULL_ERROR ?= 0

.PHONY: install demo test test-fast bench flops rank rehearse det-demo seg-demo det-coco seg-ade20k clean lock

install: $(STAMP)

# Idempotent: reruns only when the dependency spec changes. mmcv's wheel is built once and cached
# under ~/.cache/ravlt/wheels (tools/build_mmcv.sh), so later installs and CI reuse it.
$(STAMP): pyproject.toml requirements/lock.txt tools/build_mmcv.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools<82' wheel packaging ninja
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	bash tools/build_mmcv.sh $(PY)
	$(PY) -m pip install -q -c requirements/lock.txt -e '.[dev]'
	$(PY) -c "import ravlt, mmcv.ops, mmdet, mmseg, lightning, hydra; print('ravlt install OK: mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'mmseg', mmseg.__version__)"
	touch $(STAMP)

# The README's main job: RAVLT-T on the embedded digits dataset, CPU.
demo: install
	$(PY) train.py task=classification model=ravlt_t dataset=digits hardware=cpu logger=csv experiment=digits_demo

test: install
	$(PY) -m pytest tests

test-fast: install
	$(PY) -m pytest tests -m "not slow"

flops: install
	$(PY) -m ravlt.tools.flops

rank: install
	$(PY) -m ravlt.analysis.rank --model ravlt_t --out outputs/rank $(ARGS)

bench: install
	$(PY) -m ravlt.bench

# The paper's 25 runs as shipped, a few CPU steps each: train, checkpoint, resume, evaluate (README, "Rehearsal").
# ARGS="--runs 'upernet-*'" picks runs; python -m ravlt.rehearse --help lists them.
rehearse: install
	$(PY) -m ravlt.rehearse $(ARGS)

det-demo: install
	$(PY) train.py task=detection model=ravlt_t detector=mask_rcnn_demo dataset=shapes_coco hardware=cpu logger=csv

seg-demo: install
	$(PY) train.py task=segmentation model=ravlt_t segmentor=fpn_demo dataset=shapes_ade hardware=cpu logger=csv

det-coco: install
	$(PY) train.py task=detection model=ravlt_s detector=mask_rcnn_1x dataset=coco $(ARGS)

seg-ade20k: install
	$(PY) train.py task=segmentation model=ravlt_s segmentor=upernet_160k dataset=ade20k $(ARGS)

# Refresh the tested version set after changing pyproject.toml.
lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' \
	  | sed 's|^onedl-mmcv @ .*|onedl-mmcv==2.3.6|' > requirements/lock.txt

clean:
	rm -rf outputs multirun .pytest_cache
