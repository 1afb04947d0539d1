"""tools/gpu_check.sh on this CPU machine: the dry run prepares every stage for real and writes the report;
a stage over its time box is stopped and recorded while the next still runs; the parts it reads back
(junit XML, Requires-Dist) are read right."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "tools"))  # gpu_check imports gpu_report beside it
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "tools"))
    return module


def make_wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    """A real (if tiny) pure-Python wheel: one module, its metadata and RECORD."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": "VALUE = 42\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\n" + f"Name: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as z:
        for arc, text in files.items():
            z.writestr(arc, text)
        z.writestr(f"{info}/RECORD", "".join(f"{arc},,\n" for arc in files) + f"{info}/RECORD,,\n")
    return path


def gpu_check(tmp_path: Path, *args: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, dict, str]:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env.update(PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(["bash", "tools/gpu_check.sh", "--dry-run", "--out", str(out),
                           "--work", str(tmp_path / "work"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip
    report = json.loads((out / "gpu_check.json").read_text())
    return proc, report, (out / "gpu_check.md").read_text()


def test_dry_run_prepares_every_stage_and_writes_the_report(tmp_path):
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "ravlt_gpu_probe", "1.0", ["numpy", 'no-such-package-anywhere; python_version < "3"'])
    proc, report, md = gpu_check(tmp_path, "--wheels", str(wheels))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stages = {s["name"]: s for s in report["stages"]}
    assert list(stages) == ["setup", "1", "2", "3", "4"]
    setup = stages["setup"]
    assert setup["status"] == "pass", setup
    assert (
        setup["details"]["install"]["rc"] == 0
        and setup["details"]["wheels"] == ["ravlt_gpu_probe-1.0-py3-none-any.whl"]
    )
    assert (tmp_path / "work" / "site" / "ravlt_gpu_probe.py").is_file()  # really installed, for the GPU's Python
    assert setup["details"]["requirements"]["unmet"] == []
    assert report["machine"]["imports"]["ravlt.bench.cuda"] == "ok" and report["machine"]["cuda_available"] is False
    for name in ("1", "2", "3", "4"):
        assert stages[name]["status"] == "skipped: no CUDA", stages[name]
        assert stages[name]["seconds"] <= stages[name]["box_s"] + 10
    assert stages["1"]["details"]["collected"] >= 10
    assert "tests/gpu/test_cuda_models.py" in stages["1"]["details"]["files"]
    planned = stages["2"]["details"]["planned"]
    assert "eval b128 224² ravlt_b" in planned and "eval b1 1024² convnext_small" in planned
    assert "train b128 224² ravlt_s (compile)" in planned and "eval b128 224² ravlt_s (bf16 core)" in planned
    assert "no onedl-mmcv source" in stages["4"]["summary"]
    assert "| 3 | skipped: no CUDA |" in md and "## 2. python -m ravlt.bench --suite cuda" in md
    assert (tmp_path / "out" / "gpu_check_log.txt").stat().st_size > 0


def test_a_stage_over_its_box_is_stopped_and_the_next_still_reports(tmp_path):
    proc, report, md = gpu_check(tmp_path, "--wheels", str(tmp_path / "none"), "--stages", "1,3", "--box", "1=1")
    assert proc.returncode == 1  # a timeout is a failure of the check
    stages = {s["name"]: s for s in report["stages"]}
    assert list(stages) == ["setup", "1", "3"]
    assert stages["setup"]["summary"].startswith("no wheels carried")
    assert stages["1"]["status"] == "timeout" and stages["1"]["seconds"] < 1 + 3 * 8
    assert "timed out" in stages["1"]["log_tail"]
    assert stages["3"]["status"] == "skipped: no CUDA"
    assert "| 1 | timeout |" in md


def test_sigterm_stops_the_running_stage_and_the_report_says_so(tmp_path):
    out = tmp_path / "out"
    env = {**{k: v for k, v in os.environ.items() if k != "OUT"}, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(["bash", "tools/gpu_check.sh", "--dry-run", "--out", str(out),
                             "--wheels", str(tmp_path / "none"), "--stages", "1"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until stage 1 has started
        report = json.loads((out / "gpu_check.json").read_text()) if (out / "gpu_check.json").is_file() else {}
        if any(s["name"] == "1" for s in report.get("stages", [])):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    stages = {s["name"]: s for s in json.loads((out / "gpu_check.json").read_text())["stages"]}
    assert stages["1"]["status"] == "interrupted", output


def test_bad_arguments_are_one_line_errors(tmp_path):
    for args, message in ((["--stages", "1,5"], "unknown stage '5'"), (["--box", "2=soon"], "expected STAGE=SECONDS")):
        proc = subprocess.run(["bash", "tools/gpu_check.sh", *args], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHON": sys.executable})  # fmt: skip
        assert proc.returncode == 2 and message in proc.stderr


def test_requirements_check_finds_missing_and_wrong_versions(tmp_path):
    gpu_check_module = load_tool("gpu_check")
    import importlib.metadata as md

    site = tmp_path / "site"
    make_wheel(tmp_path / "w", "probe_pkg", "0.1", [
        "numpy", "no-such-package-anywhere>=1", "torch<1", 'other-missing; extra == "docs"',
        'py2-only; python_version < "3"', "opencv-python",
    ])  # fmt: skip
    with zipfile.ZipFile(next((tmp_path / "w").glob("*.whl"))) as z:
        z.extractall(site)
    result = gpu_check_module.check_requirements(str(site), md)
    assert result["installed"] == {"probe-pkg": "0.1"}
    unmet = result["unmet"]
    assert len(unmet) == 2, unmet
    assert unmet[0].startswith("probe_pkg needs no-such-package-anywhere>=1: not installed")
    assert unmet[1].startswith("probe_pkg needs torch<1:") and "installed" in unmet[1]


def test_junit_properties_come_back(tmp_path):
    gpu_check_module = load_tool("gpu_check")
    (tmp_path / "test_probe.py").write_text(
        "import pytest\n"
        "def test_numbers(record_property):\n    record_property('rel_err', 1.5e-6)\n"
        "def test_broken():\n    assert 1 == 2, 'one is not two'\n"
        "@pytest.mark.skip(reason='not here')\ndef test_skipped():\n    pass\n"
    )
    xml = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
                    f"--junitxml={xml}", "test_probe.py"], cwd=tmp_path, capture_output=True, timeout=120)  # fmt: skip
    tests = {t["name"]: t for t in gpu_check_module.parse_junit(xml)}
    assert tests["test_probe::test_numbers"]["outcome"] == "passed"
    assert float(tests["test_probe::test_numbers"]["properties"]["rel_err"]) == pytest.approx(1.5e-6)
    assert (
        tests["test_probe::test_broken"]["outcome"] == "failed"
        and "one is not two" in tests["test_probe::test_broken"]["message"]
    )
    assert tests["test_probe::test_skipped"]["outcome"] == "skipped"


def test_report_renders_measurements_of_every_stage():
    gpu_report = load_tool("gpu_report")
    report = dict(
        dry_run=False, started="now", command="bash tools/gpu_check.sh", elapsed_s=400.0, budget_s=540.0,
        machine=dict(gpu="NVIDIA H200", capability="9.0", gpu_memory_gib=139.8, python="3.12.3", torch="2.11.0",
                     torch_cuda="13.0", cpus=16, nvcc="Build cuda_13.0"),
        stages=[
            dict(name="1", title="1. tests", status="fail", seconds=50.0, box_s=180.0, summary="1 failed",
                 details=dict(tests=[dict(name="t::a", outcome="passed", seconds=1.0,
                                          properties={"grad_rel_err": "3.2e-06"}),
                                     dict(name="t::b", outcome="failed", seconds=2.0, properties={},
                                          message="assert 0.2 < 0.05\nmore")]),
                 log_tail="line 1\nline 2"),
            dict(name="2", title="2. bench", status="pass", seconds=170.0, box_s=180.0,
                 details=dict(table="| x | y |")),
            dict(name="4", title="4. mm", status="pass", seconds=100.0, box_s=120.0,
                 details=dict(build=dict(rc=0, seconds=300.0, jobs=12, arch="9.0", note="beside"),
                              mask_rcnn_demo=dict(run=dict(seconds=30.0), metrics={"coco/bbox_mAP": 0.01},
                                                  iterations=20, first_loss=3.9, last_loss=3.1),
                              fpn_demo=dict(run=dict(seconds=9.0), metrics={}, iterations=20))),
        ],
    )  # fmt: skip
    md = gpu_report.render(report)
    assert "NVIDIA H200 (sm_90, 139.8 GiB)" in md
    assert (
        "| t::a | passed | 1.0 | grad_rel_err=3.2e-06 |" in md and "| t::b | failed | 2.0 | assert 0.2 < 0.05 |" in md
    )
    assert "| x | y |" in md and "mmcv build: exit 0, 300.0 s, 12 jobs" in md
    assert "mask_rcnn_demo: 30.0 s, 20 iterations, loss 3.9 -> 3.1, coco/bbox_mAP 0.01" in md
    assert "fpn_demo: 9.0 s, 20 iterations, no metrics" in md
    assert "```\nline 1\nline 2\n```" in md
