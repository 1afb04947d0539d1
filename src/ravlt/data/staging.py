"""Generated datasets appear whole or not at all: written into a temporary sibling folder, renamed into
place when complete (or swapped for an outdated copy), so an interrupted run never leaves a half-written
dataset that looks complete, and concurrent processes (DDP ranks) cannot collide."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def generate_into(root: str | os.PathLike, write: Callable[[Path], None], is_complete: Callable[[Path], bool]) -> Path:
    """``write(folder)`` into a fresh folder that becomes ``root`` (which must not exist); returns ``root``."""
    root = Path(root)
    if root.exists():
        raise FileExistsError(f"{root} already exists; remove it to regenerate the dataset")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        write(tmp)
        try:
            os.rename(tmp, root)
        except OSError:
            if not is_complete(root):  # another process got there first but did not finish
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def ensure(root: str | os.PathLike, is_complete: Callable[[Path], bool], generate: Callable[[Path], Path]) -> Path:
    """``root`` as it is when complete, else ``generate(root)`` (an empty ``root`` folder is replaced)."""
    root = Path(root)
    if is_complete(root):
        return root
    if root.exists() and not any(root.iterdir()):
        root.rmdir()
    return generate(root)


def replace_folder(new: Path, old: Path, is_complete: Callable[[Path], bool]) -> None:
    """Put the complete folder ``new`` where ``old`` is (moved aside first, then deleted). When another process
    does the same at once, one complete copy ends up there and the other is dropped."""
    stale = old.with_name(f"{new.name}-old")
    if old.exists():
        try:
            os.rename(old, stale)
        except FileNotFoundError:  # another process moved it first
            pass
    try:
        os.rename(new, old)
    except OSError:
        if not is_complete(old):  # neither ours nor a complete copy of another process
            raise
    shutil.rmtree(stale, ignore_errors=True)
