"""The package as users get it: the core (classification) imports no OpenMMLab module, a dense task without
the OpenMMLab extras stops with one line naming the install command, and a built wheel, installed
elsewhere (not editable), runs its commands from any directory with the configs it carries."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
OPENMMLAB = ("mmcv", "mmengine", "mmdet", "mmseg")
CORE_MODULES = ("ravlt", "ravlt.train", "ravlt.tasks", "ravlt.tasks.classification", "ravlt.predict.cli",
                "ravlt.predict.classification", "ravlt.tools.flops", "ravlt.analysis.rank",
                "ravlt.bench.cli")  # fmt: skip


def python(*args: str, cwd: Path = PROJECT_ROOT, pythonpath: Path = PROJECT_ROOT / "src", timeout: float = 300):
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "HYDRA_FULL_ERROR": "0", "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_classification_path_imports_no_openmmlab_module():
    code = (f"import sys, importlib\nfor m in {CORE_MODULES!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {OPENMMLAB!r}))")  # fmt: skip
    done = python("-c", code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


# The OpenMMLab packages made unimportable, as where they are not installed (None in sys.modules: both
# import and importlib.util.find_spec then report them missing).
WITHOUT_OPENMMLAB = ("import runpy, sys\n"
                     "sys.modules.update(dict.fromkeys({mods!r}))\n"
                     "sys.argv = {argv!r}\n"
                     "runpy.run_path({script!r}, run_name='__main__')")  # fmt: skip


@pytest.mark.parametrize("task, args", [
    ("detection", ["task=detection", "detector=mask_rcnn_demo", "dataset=shapes_coco"]),
    ("segmentation", ["task=segmentation", "segmentor=fpn_demo", "dataset=shapes_ade"]),
])  # fmt: skip
def test_a_dense_task_without_the_openmmlab_extras_names_the_install_command(task, args, tmp_path):
    data = tmp_path / "data"
    argv = ["train.py", *args, "hardware=cpu", "logger=csv", f"hydra.run.dir={tmp_path / 'run'}"]
    code = WITHOUT_OPENMMLAB.format(mods=OPENMMLAB, argv=argv, script=str(PROJECT_ROOT / "train.py"))
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src"),
                               "RAVLT_DATA_DIR": str(data)})  # fmt: skip
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: task={task} needs the OpenMMLab packages"), done.stderr[-3000:]
    assert "make install-mm" in last and "mmcv" in last
    assert "Traceback" not in done.stderr
    assert not data.exists()  # stopped before generating the dataset


ONEDL_NOTICE = "Could not import OneDL"
DENSE_MODULES = ("ravlt.tasks.detection", "ravlt.tasks.segmentation", "ravlt.predict.detection",
                 "ravlt.predict.segmentation", "ravlt.rehearse.inputs")  # fmt: skip


def test_the_dense_paths_hold_back_the_forks_onedl_notice():
    pytest.importorskip("mmdet")
    pytest.importorskip("mmseg")
    plain = python("-c", "import mmdet.datasets, mmseg.datasets")
    if ONEDL_NOTICE not in plain.stdout + plain.stderr:
        pytest.skip("this OpenMMLab fork prints no OneDL notice")
    code = (f"import sys, importlib\nfor m in {DENSE_MODULES!r}: importlib.import_module(m)\n"
            "from ravlt.tasks.detection import coco_classes\nassert len(coco_classes()) == 80\n"
            "assert {'mmdet.datasets', 'mmseg.datasets'} <= set(sys.modules)")  # fmt: skip
    done = python("-c", code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ONEDL_NOTICE not in done.stdout + done.stderr


def copy_sources(dest: Path) -> Path:
    """What a build reads, copied (it writes build/ and *.egg-info/ beside the sources); the links in
    src/ravlt/bundled/ are relative, so they point into the copy."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "conf", "detection", "segmentation"):
        (shutil.copytree if (PROJECT_ROOT / name).is_dir() else shutil.copy)(PROJECT_ROOT / name, dest / name)
    shutil.copytree(PROJECT_ROOT / "src", dest / "src", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from the sources, installed into a folder of its own (not editable, no dependencies:
    they come from this environment)."""
    root = tmp_path_factory.mktemp("wheel")
    source = copy_sources(root / "source")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", root / "dist", source], check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    target = root / "site"
    wheel = next((root / "dist").glob("ravlt-*.whl"))
    subprocess.run([*pip, "install", "-q", "--no-deps", "--target", target, wheel], check=True, capture_output=True,
                   timeout=300)  # fmt: skip
    return target


def test_the_installed_package_is_the_wheel_and_carries_the_configs(installed, tmp_path):
    done = python("-c", "import ravlt, ravlt.configs as c; print(ravlt.__file__); print(c.HYDRA_CONFIG_DIR)",
                  cwd=tmp_path, pythonpath=installed)  # fmt: skip
    module_file, conf = done.stdout.split()
    assert Path(module_file).is_relative_to(installed)
    assert Path(conf).is_relative_to(installed) and not Path(conf).is_symlink()
    for config in ("config.yaml", "predict.yaml", "detector/mask_rcnn_demo.yaml", "segmentor/fpn_demo.yaml"):
        assert (Path(conf) / config).is_file(), config


def test_installed_commands_run_from_any_directory(installed, tmp_path):
    bin_dir = installed / "bin"
    env = {**os.environ, "PYTHONPATH": str(installed)}
    for command in ("ravlt-train", "ravlt-predict"):  # Hydra: --help lists the config groups it found
        done = subprocess.run([bin_dir / command, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert done.returncode == 0 and "detector: " in done.stdout, (command, done.stderr[-2000:])
    for command in ("ravlt-rank", "ravlt-flops"):
        done = subprocess.run([bin_dir / command, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert done.returncode == 0 and "usage:" in done.stdout, (command, done.stderr[-2000:])
    done = python("-m", "ravlt.train", "task=detection", "detector=mask_rcnn_demo", "--cfg", "job", cwd=tmp_path,
                  pythonpath=installed)  # fmt: skip
    assert done.returncode == 0 and "mask-rcnn_ravlt-t_fpn-slim_shapes-coco.py" in done.stdout, done.stderr[-2000:]


def test_installed_package_reads_its_bundled_mmengine_configs(installed, tmp_path):
    pytest.importorskip("mmengine")
    code = ("from ravlt.mm.settings import load_config, sized_config_path\n"
            "for template in ('detection/configs/mask-rcnn_ravlt-{size}_fpn_ms-crop-3x_coco.py',\n"
            "                 'segmentation/configs/fpn_ravlt-t_slim_shapes-ade-128x128.py'):\n"
            "    cfg = load_config(sized_config_path(template, 'ravlt_t'))\n"
            "    print(cfg.filename, cfg.model.backbone.type)")  # fmt: skip
    done = python("-c", code, cwd=tmp_path, pythonpath=installed)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()[-2:]
    assert all(line.startswith(str(installed)) and line.endswith("ravlt.RAVLTBackbone") for line in lines), lines
