"""tools/gpu_wheels.sh without the network: every package it fetches is pinned in requirements/lock.txt, a
folder already holding the locked files is left alone (no pip call), and a file of another version goes."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def wheels(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "tools/gpu_wheels.sh", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)  # fmt: skip


def test_every_package_is_locked_and_the_set_is_complete():
    listing = wheels("--list")
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines()]
    locked = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        locked[name.lower().replace("_", "-")] = version
    for kind, name, version in rows:
        assert kind in ("binary", "built", "source") and locked[name] == version, (kind, name, version)
    names = {name for _, name, _ in rows}
    # what the GPU image lacks for stages 1-4 (README, "GPU check")
    assert {"hydra-core", "omegaconf", "antlr4-python3-runtime", "fvcore", "iopath", "onedl-mmengine",
            "onedl-mmdetection", "onedl-mmsegmentation", "pycocotools", "onedl-mmcv"} <= names  # fmt: skip
    assert ("source", "onedl-mmcv", locked["onedl-mmcv"]) in [tuple(r) for r in rows]


def test_a_complete_folder_is_kept_and_other_versions_are_removed(tmp_path):
    rows = [line.split() for line in wheels("--list").stdout.splitlines()]
    for kind, name, version in rows:
        stem = name.lower().replace("-", "_")
        (tmp_path / (f"{stem}-{version}.tar.gz" if kind == "source"
                     else f"{stem}-{version}-py3-none-any.whl")).write_bytes(b"x")
    (tmp_path / "yacs-0.0.1-py3-none-any.whl").write_bytes(b"old")
    result = wheels(WHEEL_DIR=str(tmp_path), PYTHON="false")  # any pip call would fail
    assert result.returncode == 0, result.stderr
    assert "removing yacs-0.0.1-py3-none-any.whl (not the locked" in result.stdout
    assert not (tmp_path / "yacs-0.0.1-py3-none-any.whl").exists()
    assert len(list(tmp_path.iterdir())) == len(rows) and "total: 0.0 MiB" in result.stdout


def test_unknown_argument_is_a_one_line_error():
    result = wheels("--fetch-everything")
    assert result.returncode == 1 and result.stderr.strip() == (
        "error: unknown argument --fetch-everything (usage: bash tools/gpu_wheels.sh [--list])"
    )
