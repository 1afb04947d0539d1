"""Adjustments to the maintained OpenMMLab fork, made on import of :mod:`ravlt.mm` (before any config is read).

- ``mmseg::`` config bases: onedl-mmengine maps the ``mmseg`` scope to the distribution name
  ``mmsegmentation``, but the fork installs as ``onedl-mmsegmentation`` (module ``mmseg``), so
  ``_base_ = 'mmseg::...'`` fails with "mmsegmentation is not installed". Point the scope at the module,
  which mmengine then resolves through importlib as it does for ``mmdet``.
- The forks' dataset packages print "Could not import OneDL..." on every import (a debug message that
  mmengine's ``print_log`` prints when no logger is given) for an optional dataset library we do not use.
  They are imported here once with that line held back; every other line goes through.
"""
import contextlib
import importlib
import io
import sys
from importlib.util import find_spec

from mmengine.config import utils as _config_utils
from mmengine.utils import is_installed

DATASET_PACKAGES = ("mmdet.datasets", "mmseg.datasets")
ONEDL_NOTICE = "Could not import OneDL"


def fix_mmseg_config_scope() -> None:
    if not is_installed(_config_utils.MODULE2PACKAGE["mmseg"]) and is_installed("mmseg"):
        _config_utils.MODULE2PACKAGE["mmseg"] = "mmseg"


def import_datasets_without_onedl_notice() -> None:
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            for name in DATASET_PACKAGES:
                if find_spec(name.split(".")[0]) is not None:
                    importlib.import_module(name)
    finally:
        sys.stdout.write("".join(line for line in printed.getvalue().splitlines(True) if ONEDL_NOTICE not in line))


fix_mmseg_config_scope()
import_datasets_without_onedl_notice()
