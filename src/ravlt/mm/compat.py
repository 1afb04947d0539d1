"""Make ``mmseg::`` config bases resolve with the maintained OpenMMLab fork.

onedl-mmengine maps the ``mmseg`` scope to the distribution name ``mmsegmentation``, but the fork
installs as ``onedl-mmsegmentation`` (module ``mmseg``), so ``_base_ = 'mmseg::...'`` fails with
"mmsegmentation is not installed". Point the scope at the module, which mmengine then resolves through
importlib as it does for ``mmdet``. Runs on import of :mod:`ravlt.mm`, before any config is read.
"""
from mmengine.config import utils as _config_utils
from mmengine.utils import is_installed


def fix_mmseg_config_scope() -> None:
    if not is_installed(_config_utils.MODULE2PACKAGE["mmseg"]) and is_installed("mmseg"):
        _config_utils.MODULE2PACKAGE["mmseg"] = "mmseg"


fix_mmseg_config_scope()
