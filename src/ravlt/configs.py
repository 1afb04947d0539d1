"""Where the configuration files are, in a clone and in an installed package alike.

The repository's top-level ``conf/`` (Hydra groups), ``detection/configs/`` and ``segmentation/configs/``
(mmengine configs) are the source of truth. ``src/ravlt/bundled/`` links to them, so a built wheel carries
copies as package data and ``pip install ravlt`` finds them without a clone; a config given by an explicit
path (absolute, or relative to the working directory) always takes precedence.
"""
from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

BUNDLED = Path(str(files("ravlt") / "bundled"))
HYDRA_CONFIG_DIR = BUNDLED / "conf"


def config_file(path: str | os.PathLike) -> Path:
    """An absolute path for a config file: as given, else relative to the working directory, else to the
    bundled configs (``detection/configs/...`` works from any directory)."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    for base in (Path.cwd(), BUNDLED):
        if (base / path).exists():
            return (base / path).resolve()
    return (Path.cwd() / path).resolve()
