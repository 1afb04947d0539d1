import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from ravlt.tools.malloc import INHERITED_ENV, give_freed_memory_back

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # tests/reference.py, the plain-formula oracle

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def _share_the_cores_between_workers():
    """Under pytest-xdist (``-n``) each worker gets its share of the cores, for torch and for the processes
    its tests start: the workers side by side at PyTorch's default of one thread per core would crowd them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


_share_the_cores_between_workers()


def pytest_report_header(config):
    # the suite peaked at about 2.6 GB of temporary files, in one process and in two workers (README, Tests);
    # a full disk shows up as errors in tmp_path
    folder = tempfile.gettempdir()
    free = shutil.disk_usage(folder).free / 2**30
    return f"temporary files: {free:.1f} GiB free in {folder} (the suite needs about 3)"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """In-process runs (``hardware.threads``, the bench's ``--threads``) set this process's thread count;
    give later tests the count they had, a worker's share of the cores under pytest-xdist."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _give_freed_memory_back():
    """In-process runs with ``hardware.keep_freed_memory`` (and the bench) make glibc keep every freed byte
    (ravlt.tools.malloc), in this process and, through ``MALLOC_*``, in the processes started after them:
    the test process would hold its high-water mark for the rest of the suite. Undo it after the test."""
    before = {key: os.environ.get(key) for key in INHERITED_ENV}
    yield
    if before != INHERITED_ENV and all(os.environ.get(k) == v for k, v in INHERITED_ENV.items()):
        give_freed_memory_back()
        os.environ.update({key: value for key, value in before.items() if value is not None})


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture
def compose_run(tmp_path):
    """``compose_run(*overrides)``: the project's Hydra config as ``train.py`` would compose it."""

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
            return compose("config", overrides=[*overrides, f"output_dir={tmp_path / 'run'}"])

    return _compose
