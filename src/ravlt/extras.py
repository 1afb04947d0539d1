"""The optional parts of the package: detection and segmentation need the OpenMMLab stack (package extras
``det`` / ``seg``, both: ``mm``), which ``make install`` leaves out so that classification is ready in minutes.

:func:`require_task_packages` turns a missing extra into one ``ConfigError`` line naming the command that
installs it, before anything imports OpenMMLab.
"""
from __future__ import annotations

from importlib.util import find_spec

from ravlt.errors import ConfigError

# task -> (extra, top-level modules it brings)
TASK_EXTRAS = {
    "detection": ("det", ("mmengine", "mmcv", "mmdet", "pycocotools")),
    "segmentation": ("seg", ("mmengine", "mmcv", "mmseg")),
}
INSTALL_COMMAND = "make install-mm"


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    return [name for name in modules if find_spec(name) is None]


def require_task_packages(task: str) -> None:
    """Raise ``ConfigError`` when the packages of ``task`` are not installed (classification needs none)."""
    if task not in TASK_EXTRAS:
        return
    extra, modules = TASK_EXTRAS[task]
    missing = missing_modules(modules)
    if missing:
        raise ConfigError(
            f"task={task} needs the OpenMMLab packages (extra '{extra}'; not installed: {', '.join(missing)}): "
            f"run `{INSTALL_COMMAND}` in the repository (compiles mmcv once, see README 'Install')"
        )
