"""Where a dataset lives: the ``dataset`` config's root, generated first for the offline datasets, and
checked against the layout the task reads, with one error that says which key or variable to set."""
from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from ravlt.errors import ConfigError

GENERATORS = {  # dataset.generator -> "module:function(root, **dataset.generator_args)"
    "digits": "ravlt.data.digits:ensure_digits",
    "shapes_coco": "ravlt.data.shapes_coco:ensure_shapes_coco",
    "shapes_ade": "ravlt.data.shapes_ade:ensure_shapes_ade",
}
OFFLINE_DATASETS = {"classification": "digits", "detection": "shapes_coco", "segmentation": "shapes_ade"}


def _advice(dataset: Mapping, layout: str) -> str:
    name, env = dataset["name"], dataset.get("root_env")
    where = f"dataset.root=/path/to/{name}" + (f" or export {env}=/path/to/{name}" if env else "")
    offline = OFFLINE_DATASETS.get(dataset.get("task"))
    return f"Set {where} ({layout})." + (f" No data at hand? dataset={offline} runs offline." if offline else "")


def dataset_root(dataset: Mapping, layout: str) -> Path:
    """The dataset's root folder, generated first when the dataset has a ``generator``.

    ``layout`` describes what the folder must hold, for the error message.
    """
    if not dataset.get("root"):
        raise ConfigError(f"dataset={dataset['name']} needs its data. {_advice(dataset, layout)}")
    root = Path(str(dataset["root"])).expanduser().absolute()
    generator = dataset.get("generator")
    if generator:
        if generator not in GENERATORS:
            raise ConfigError(f"dataset.generator={generator} is not one of {', '.join(GENERATORS)}")
        module, function = GENERATORS[generator].split(":")
        getattr(importlib.import_module(module), function)(root, **dict(dataset.get("generator_args") or {}))
    if not root.is_dir():
        raise ConfigError(f"dataset={dataset['name']}: dataset root {root} not found. {_advice(dataset, layout)}")
    return root


def require(dataset: Mapping, base: Path, patterns: Iterable[str], layout: str) -> None:
    """Every pattern (a path, or a glob such as ``images/training/*.jpg``) exists under ``base``."""
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            folder = base / Path(pattern).parent
            found = folder.is_dir() and any(base.glob(pattern))
            missing = f"{folder} (no {Path(pattern).name})"
        else:
            found = (base / pattern).exists()
            missing = str(base / pattern)
        if not found:
            raise ConfigError(f"dataset={dataset['name']}: {missing} not found. {_advice(dataset, layout)}")
