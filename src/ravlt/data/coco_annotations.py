"""A COCO annotation file checked before a detection run reads it: pycocotools and mmdet fail on a
broken one with a bare ``JSONDecodeError`` / ``KeyError`` / ``IndexError`` and no file name, after the
model is built.

Every file is checked for truncation (a JSON object ends with ``}``); one of at most
:data:`FULL_CHECK_BYTES` (COCO's val split, our generated ones) is also parsed, and must have the keys
``images``, ``annotations`` and ``categories`` and a category for every class the run trains. COCO's
train split (448 MB) is parsed once, by mmdet.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ravlt.errors import ConfigError

FULL_CHECK_BYTES = 64 * 2**20
REQUIRED_KEYS = ("images", "annotations", "categories")


def _ends(path: Path, size: int = 64) -> tuple[bytes, bytes]:
    with open(path, "rb") as f:
        head = f.read(size)
        f.seek(max(0, os.path.getsize(path) - size))
        return head.strip(), f.read().strip()


def check_coco_annotations(path: Path, classes: Sequence[str] | None, key: str) -> None:
    """``path`` (given by the dataset option ``key``) is a complete COCO annotation file with a category
    for each of ``classes`` (None: not checked)."""
    head, tail = _ends(path)
    if not head.startswith(b"{") or not tail.endswith(b"}"):
        raise ConfigError(
            f"{key}: {path} is {'empty' if not head else 'not a complete JSON object (truncated?)'}; "
            "download or generate it again"
        )
    if os.path.getsize(path) > FULL_CHECK_BYTES:
        return
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{key}: {path} is not valid JSON ({e})") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(data.get(k), list)]
    if missing:
        raise ConfigError(f"{key}: {path} lacks the COCO key(s) {', '.join(missing)}; is it an instances_*.json file?")
    names = sorted(str(c.get("name")) for c in data["categories"])
    absent = [c for c in classes or () if c not in names]
    if absent:
        raise ConfigError(
            f"{key}: {path} has no category named {', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''} "
            f"(its categories: {', '.join(names[:10]) or 'none'}); set dataset.classes to names it has"
        )
