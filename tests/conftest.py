import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/reference.py, the plain-formula oracle

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def pytest_report_header(config):
    # the whole suite peaked at 2.6 GB of temporary files (2026-11-30); a full disk shows up as errors in tmp_path
    folder = tempfile.gettempdir()
    return f"temporary files: {shutil.disk_usage(folder).free / 2**30:.1f} GiB free in {folder} (the suite needs about 3)"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
