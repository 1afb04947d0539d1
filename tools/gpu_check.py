"""The GPU check: every CUDA path of the project exercised and measured on one GPU in one time-boxed run.

    bash tools/gpu_check.sh                 # on a machine with a CUDA GPU; report in $OUT (else outputs/gpu_check)
    bash tools/gpu_check.sh --dry-run       # on a CPU machine: the same script, CUDA stages "skipped: no CUDA"
    bash tools/gpu_check.sh --rehearse      # on a CPU machine: the stages' real code at toy sizes on the CPU

Stages, each in its own process group and killed at its time box (SIGINT first, so pytest and the bench
write what they have); gpu_check.json and gpu_check.md are rewritten after every stage:

  setup  (60 s)  machine and versions; the wheels carried in .whl/ installed into a temporary target,
                 and every requirement they declare checked against what the machine has
  1     (180 s)  pytest -m gpu: CUDA against CPU fp32 logits and gradients, bf16 / fp16 autocast finite at
                 224² and 1024², the SDPA kernel of the softmax stages, the bench on CUDA
  2     (180 s)  python -m ravlt.bench --suite cuda (ravlt.bench.cuda): img/s and peak memory, eager and
                 torch.compile, fp32 against bf16 RALA core
  3     (120 s)  train.py: RAVLT-T on digits, hardware=gpu (bf16-mixed), 2 epochs; then task.mode=eval on its
                 checkpoint
  4     (rest)   onedl-mmcv's CUDA ops compiled for this GPU from the carried source (the build starts in the
                 background at the beginning, nice 19, on all cores but two) and 20 iterations each of the
                 Mask R-CNN and Semantic FPN demos on the GPU

The whole run keeps to --budget seconds (540: 9 minutes): a stage gets its box or what is left of the
budget, whichever is less. The dry run runs every stage's preparation for real (the wheel install, the
pytest collection, the bench plan, the Hydra composition of every training command) and records it. The
rehearsal runs what a GPU machine runs, on the CPU and small (hardware=cpu, the bench's --quick, no mmcv
build: the installed mmcv's CPU ops), so that the parsing and checking of every stage's results is
exercised too; its figures mean nothing.

Standard library only: this file also runs as the probe inside the prepared environment (--probe).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import gpu_report

ROOT = Path(__file__).resolve().parents[1]
BOXES = {"setup": 60.0, "1": 180.0, "2": 180.0, "3": 120.0, "4": 540.0}
TITLES = {
    "setup": "setup: machine, versions, carried wheels",
    "1": "1. pytest -m gpu (model tests on CUDA)",
    "2": "2. python -m ravlt.bench --suite cuda",
    "3": "3. train.py classification on digits, hardware=gpu, then task.mode=eval",
    "4": "4. onedl-mmcv CUDA ops build, Mask R-CNN and FPN demos on the GPU",
}
MM_ITERATIONS = 20  # of each mmdet / mmseg demo in stage 4
MM_DEMOS = ("mask_rcnn_demo", "fpn_demo")
MIN_USEFUL_S = 15.0  # a stage is not started with less than this left of the budget
KILL_GRACE_S = 8.0
LOG_TAIL = 6000
# What the GPU image has under another name, and requirements that the stages never import.
EQUIVALENT = {"opencv-python": "opencv-python-headless"}
UNUSED = {"imaug": "mmdet's optional image-corruption transform"}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]  # fmt: skip


# --- running commands in a time box ---------------------------------------------------------------------
def run_boxed(cmd: list[str], box: float, log: Path, env: dict, cwd: Path = ROOT) -> dict:
    """Run ``cmd`` in its own process group, output appended to ``log``; at ``box`` seconds the group gets
    SIGINT, then SIGTERM and SIGKILL. Returns rc, seconds and whether it timed out."""
    start = time.monotonic()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        timed_out = False
        try:
            proc.wait(timeout=max(box, 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=KILL_GRACE_S)
                    break
                except subprocess.TimeoutExpired:
                    continue
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            try:  # what the command left running in its group (dataloader workers, compile workers)
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        seconds = time.monotonic() - start
        out.write(f"[exit {proc.returncode}{', timed out' if timed_out else ''} after {seconds:.1f} s]\n\n")
    return dict(rc=proc.returncode, seconds=round(seconds, 1), timed_out=timed_out)


def tail(path: Path, limit: int = LOG_TAIL) -> str:
    if not path.is_file():
        return ""
    data = path.read_bytes()
    return data[-limit:].decode("utf-8", "replace")


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- the probe: runs inside the prepared environment -----------------------------------------------------
def probe(site: str | None) -> dict:
    """Versions, the GPU, and the requirements of every distribution installed in ``site``."""
    import importlib
    import importlib.metadata as md
    import platform

    info: dict = dict(python=platform.python_version(), executable=sys.executable, cpus=os.cpu_count())
    try:
        import torch

        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                        gpu_memory_gib=round(props.total_memory / 2**30, 1),
                        multiprocessors=props.multi_processor_count, cudnn=torch.backends.cudnn.version(),
                        bf16_supported=torch.cuda.is_bf16_supported())  # fmt: skip
    except Exception as e:  # noqa: BLE001 - the probe reports, it does not fail
        info["torch_error"] = f"{type(e).__name__}: {e}"
    imports = {}
    for name in ("hydra", "omegaconf", "timm", "lightning", "torchmetrics", "fvcore", "ravlt", "ravlt.bench.cuda",
                 "mmengine", "pycocotools", "shapely", "sklearn", "skimage", "triton"):  # fmt: skip
        try:
            module = importlib.import_module(name)
            imports[name] = getattr(module, "__version__", "ok")
        except Exception as e:  # noqa: BLE001
            imports[name] = f"error: {type(e).__name__}: {e}"
    info["imports"] = imports
    try:  # "not available" for mmcv's CPU-only build
        from mmcv.ops import get_compiling_cuda_version

        info["mmcv_cuda"] = get_compiling_cuda_version()
    except Exception as e:  # noqa: BLE001
        info["mmcv_cuda"] = f"error: {type(e).__name__}: {e}"
    if site:
        info["requirements"] = check_requirements(site, md)
    return info


def check_requirements(site: str, md) -> dict:
    """Every Requires-Dist (for this Python, no extras) of the distributions in ``site``, against what is
    importable here: {"installed": {name: version}, "unmet": [...], "ignored": [...]}."""
    try:
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name
    except ImportError as e:
        return dict(error=f"packaging missing: {e}")
    available = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            available.setdefault(canonicalize_name(name), dist.version)
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in md.distributions(path=[site])}
    unmet, ignored = [], []
    for dist in md.distributions(path=[site]):
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker and not req.marker.evaluate({"extra": ""}):
                continue
            name = canonicalize_name(req.name)
            have = installed.get(name) or available.get(name)
            if have is None and name in EQUIVALENT:
                have = available.get(EQUIVALENT[name])
            if name in UNUSED and have is None:
                ignored.append(f"{dist.metadata['Name']} needs {line}: {UNUSED[name]}, never imported here")
            elif have is None:
                unmet.append(f"{dist.metadata['Name']} needs {line}: not installed")
            elif req.specifier and not req.specifier.contains(have, prereleases=True):
                unmet.append(f"{dist.metadata['Name']} needs {line}: {have} installed")
    return dict(installed=installed, unmet=unmet, ignored=ignored)


# --- the run ------------------------------------------------------------------------------------------------
class Check:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.start = time.monotonic()
        self.deadline = self.start + args.budget
        self.out = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = args.work or Path(tempfile.mkdtemp(prefix="ravlt-gpu-check-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.site = args.site or self.work / "site"
        self.python = sys.executable
        self.cuda = False
        self.live = False  # stages run for real: on CUDA, or rehearsed on the CPU
        self.mmcv_cuda: str | None = None
        # on a CPU machine the wheels (the GPU machine's Python's) are only test-installed, never imported
        self.test_install = args.dry_run or args.rehearse
        self.build: dict | None = None  # the background mmcv build
        self.report = dict(
            schema=1,
            started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            dry_run=args.dry_run,
            rehearsal=args.rehearse,
            budget_s=args.budget,
            command=" ".join(["bash tools/gpu_check.sh", *args.argv]),
            machine={},
            stages=[],
        )
        self.env = self.child_env(site_on_path=False)

    # environment -------------------------------------------------------------------------------------------
    def child_env(self, site_on_path: bool) -> dict:
        paths = ([str(self.site)] if site_on_path else []) + [str(ROOT / "src")]
        if os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(paths),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "HYDRA_FULL_ERROR": "1",
            "MPLBACKEND": "Agg",
            "RAVLT_DATA_DIR": str(self.work / "data"),
        }

    @property
    def hardware(self) -> str:
        """The preset of the training stages: gpu, or cpu in a rehearsal."""
        return "cpu" if self.args.rehearse else "gpu"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def box(self, name: str) -> float:
        return min(self.args.boxes.get(name, BOXES[name]), self.left())

    # report ------------------------------------------------------------------------------------------------
    def save(self) -> None:
        self.report["elapsed_s"] = round(time.monotonic() - self.start, 1)
        self.report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        try:
            markdown = gpu_report.render(self.report)
        except Exception as e:  # noqa: BLE001 - the JSON must be written whatever the markdown does
            markdown = (
                f"# GPU check\n\nThe markdown report failed ({type(e).__name__}: {e}); "
                "gpu_check.json has everything.\n"
            )
        for name, text in (("gpu_check.json", json.dumps(self.report, indent=2, ensure_ascii=False) + "\n"),
                           ("gpu_check.md", markdown)):  # fmt: skip
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(self.out / name)
        logs = sorted(self.work.glob("*.log"))
        with open(self.out / ".gpu_check_log.txt.tmp", "w") as f:
            for log in logs:
                f.write(f"===== {log.name} (last 200 kB) =====\n{tail(log, 200_000)}\n")
        (self.out / ".gpu_check_log.txt.tmp").replace(self.out / "gpu_check_log.txt")

    def stage(self, name: str, fn) -> None:
        record = dict(name=name, title=TITLES[name], status="running", box_s=round(self.box(name), 1))
        self.report["stages"].append(record)
        self.save()  # a run killed outright still shows which stage it was in
        log = self.work / f"stage_{name}.log"
        if self.left() < MIN_USEFUL_S:
            record["status"] = f"skipped: out of time ({self.left():.0f} s of the budget left)"
        else:
            t0 = time.monotonic()
            try:
                fn(record, log)
            except Exception as e:  # noqa: BLE001 - a bug in one stage must not lose the others
                record["status"] = "fail"
                record["summary"] = f"gpu_check.py itself failed: {type(e).__name__}: {e}"
            except (KeyboardInterrupt, SystemExit):  # stopped from outside: say so, then stop
                record.update(status="interrupted", seconds=round(time.monotonic() - t0, 1), log_tail=tail(log, 3000))
                raise
            record["seconds"] = round(time.monotonic() - t0, 1)
            if record["status"] != "pass" and not record["status"].startswith("skipped"):
                record.setdefault("log_tail", tail(log, 3000))
        print(f"[{time.monotonic() - self.start:6.1f} s] stage {name}: {record['status']}"
              + (f" - {record['summary']}" if record.get("summary") else ""), flush=True)  # fmt: skip
        self.save()

    @staticmethod
    def prepared(record: dict, results: list[dict], ok: bool, summary: str, failure: str) -> None:
        """The status of a stage that only prepared its work (dry run, or no CUDA device)."""
        if any(r["timed_out"] for r in results):
            record.update(status="timeout", summary=f"{failure}: timed out")
        elif ok and all(r["rc"] == 0 for r in results):
            record.update(status="skipped: no CUDA", summary=summary)
        else:
            record.update(status="fail", summary=failure)

    def python_cmd(self, *args: str) -> list[str]:
        return [self.python, *args]

    # setup -------------------------------------------------------------------------------------------------
    def setup(self, record: dict, log: Path) -> None:
        wheels = sorted(self.args.wheels.glob("*.whl")) if self.args.wheels.is_dir() else []
        details = record.setdefault("details", {})
        details["wheels_dir"] = str(self.args.wheels)
        details["wheels"] = [w.name for w in wheels]
        details["wheels_mib"] = round(sum(w.stat().st_size for w in wheels) / 2**20, 1)
        installed = False
        if wheels:
            cmd = self.python_cmd("-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                                  "--no-cache-dir", "--upgrade", "--disable-pip-version-check",
                                  "--target", str(self.site))  # fmt: skip
            if self.test_install:  # this machine's Python may not be the GPU's: install for the GPU's tags
                cmd += ["--python-version", self.args.gpu_python, "--implementation", "cp", "--only-binary=:all:"]
                cmd += [x for p in PLATFORMS for x in ("--platform", p)]
            res = run_boxed(cmd + [str(w) for w in wheels], self.box("setup"), log, self.env)
            details["install"] = res
            installed = res["rc"] == 0
            # a CPU machine only checks that the wheels install together: their binaries are the GPU's Python's
            if installed and not self.test_install:
                self.env = self.child_env(site_on_path=True)
        probe_file = self.work / "probe.json"
        cmd = self.python_cmd(str(Path(__file__)), "--probe", "--probe-out", str(probe_file))
        if installed:
            cmd += ["--site", str(self.site)]
        res = run_boxed(cmd, max(self.box("setup"), MIN_USEFUL_S), log, self.env)
        info = read_json(probe_file) or {}
        info.update(nvidia_smi=self.command_line(["nvidia-smi",
                                                  "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                                  "--format=csv,noheader"]),
                    nvcc=self.command_line(["nvcc", "--version"], last=True))  # fmt: skip
        self.report["machine"] = {k: v for k, v in info.items() if k != "requirements"}
        self.cuda = bool(info.get("cuda_available"))
        self.live = (self.cuda and not self.args.dry_run) or self.args.rehearse
        self.mmcv_cuda = info.get("mmcv_cuda")
        requirements = info.get("requirements", {})
        details["requirements"] = requirements
        import_errors = {k: v for k, v in info.get("imports", {}).items() if str(v).startswith("error")}
        problems = []
        if wheels and not installed:
            problems.append("the wheels did not install (see the log)")
        if res["rc"] != 0:
            problems.append("the probe failed")
        if requirements.get("unmet"):
            problems.append(f"{len(requirements['unmet'])} unmet requirements")
        if import_errors and (installed or not wheels) and not self.test_install:
            problems.append(f"imports failing: {', '.join(import_errors)}")
        record["status"] = "fail" if problems else "pass"
        record["summary"] = "; ".join(problems) or (
            f"{len(wheels)} wheels ({details['wheels_mib']} MiB) installed" if wheels else "no wheels carried"
        ) + f"; torch {info.get('torch')}, {info.get('gpu') or 'no CUDA device'}"
        if self.cuda and "4" in self.args.stages and not self.mmcv_has_cuda_ops():
            self.start_mmcv_build(info)

    def command_line(self, cmd: list[str], last: bool = False) -> str | None:
        if not shutil.which(cmd[0]):
            return None
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"error: {e}"
        return out.splitlines()[-1] if last and out else out

    # stage 1 ------------------------------------------------------------------------------------------------
    def gpu_test_files(self) -> list[str]:
        files = [p for p in sorted((ROOT / "tests").rglob("test_*.py")) if re.search(r"mark\.gpu\b", p.read_text())]
        return [str(p.relative_to(ROOT)) for p in files]

    def stage1(self, record: dict, log: Path) -> None:
        files = self.gpu_test_files()
        record["details"] = dict(files=files)
        junit = self.work / "stage1.xml"
        base = ["-m", "pytest", "-p", "no:cacheprovider", "-m", "gpu", "-o", "junit_family=xunit1"]
        if not self.live:
            res = run_boxed(self.python_cmd(*base, "--collect-only", "-q", *files), self.box("1"), log, self.env)
            collected = re.search(r"(\d+)(?:/\d+)? tests? (?:collected|selected)", tail(log))
            count = int(collected.group(1)) if collected else 0
            record["details"].update(collected=count, collect=res)
            self.prepared(record, [res], count > 0, f"{count} gpu tests collected",
                          f"the gpu tests do not collect (exit {res['rc']})")
            return
        per_test = ["--timeout=120"] if importlib.util.find_spec("pytest_timeout") else []  # one hung test, not all
        res = run_boxed(
            self.python_cmd(*base, "-q", "-rA", f"--junitxml={junit}", *per_test, *files), self.box("1"), log, self.env
        )
        tests = parse_junit(junit)
        record["details"].update(run=res, tests=tests)
        counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")}
        record["details"]["counts"] = counts
        ok = res["rc"] == 0 and counts["passed"] > 0 and not counts["failed"] and not counts["error"]
        record["status"] = "pass" if ok else ("timeout" if res["timed_out"] else "fail")
        record["summary"] = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or f"no results (exit {res['rc']})"
        if not self.cuda and res["rc"] == 0 and counts["skipped"] == len(tests) > 0:  # rehearsal: all skip
            record["status"] = "skipped: no CUDA"

    # stage 2 ------------------------------------------------------------------------------------------------
    def stage2(self, record: dict, log: Path) -> None:
        out = self.work / "stage2"
        box = self.box("2")
        cmd = ["-m", "ravlt.bench", "--suite", "cuda", "--out", str(out)]
        if not self.live:
            res = run_boxed(self.python_cmd(*cmd, "--plan"), box, log, self.env)
            result = read_json(out / "bench_cuda.json") or {}
            planned = [i["label"] for i in result.get("items", [])]
            record["details"] = dict(plan=res, planned=planned)
            self.prepared(record, [res], bool(planned), f"{len(planned)} measurements planned", "the bench plan failed")
            return
        # the suite stops starting items 30 s before the box: imports, CUDA start-up and the last item
        cmd += ["--budget", str(max(box - 30, 10))]
        if not self.cuda:  # rehearsal
            cmd += ["--device", "cpu", "--quick", "--no-compile", "--dtype", "float32",
                    "--models", "ravlt_s", "convnext_tiny", "--min-seconds", "0", "--repeats", "1"]  # fmt: skip
        beside = self.building()
        res = run_boxed(self.python_cmd(*cmd), box, log, self.env)
        result = read_json(out / "bench_cuda.json") or {}
        if result:
            shutil.copy(out / "bench_cuda.json", self.out / "bench_cuda.json")
        items = result.get("items", [])
        counts = {}
        for item in items:
            key = item["status"].split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        record["details"] = dict(run=res, counts=counts, table=(out / "bench_cuda.md").read_text() if items else "",
                                 beside=beside)  # fmt: skip
        errors = [i["label"] for i in items if i["status"].startswith("error")]
        if not counts.get("ok"):
            record["status"] = "timeout" if res["timed_out"] else "fail"
        else:
            record["status"] = "fail" if errors or res["rc"] != 0 else "pass"
        record["summary"] = ", ".join(f"{v} {k}" for k, v in counts.items()) or f"no results (exit {res['rc']})"
        if errors:
            record["summary"] += f"; errors in {', '.join(errors[:4])}"

    # stage 3 ------------------------------------------------------------------------------------------------
    def train_cmd(self, run_dir: Path, *overrides: str) -> list[str]:
        return self.python_cmd("train.py", "task=classification", "model=ravlt_t", "dataset=digits",
                               f"hardware={self.hardware}", "logger=csv", "experiment=digits_demo",
                               "task.progress_bar=false", "task.log_images=0", f"hydra.run.dir={run_dir}",
                               *overrides)  # fmt: skip

    def stage3(self, record: dict, log: Path) -> None:
        train_dir, eval_dir = self.work / "stage3" / "train", self.work / "stage3" / "eval"
        train = self.train_cmd(train_dir, "task.max_epochs=2")
        evaluate = self.train_cmd(eval_dir, "task.mode=eval", f"ckpt_path={train_dir / 'checkpoints' / 'last.ckpt'}")
        details = record["details"] = {}
        if not self.live:
            composed = [
                run_boxed(cmd + ["--cfg", "job"], self.box("3") / 2, log, self.env) for cmd in (train, evaluate)
            ]
            details["compose"] = composed
            text = tail(log, 100_000)
            ok = "precision: bf16-mixed" in text and "accelerator: gpu" in text
            self.prepared(record, composed, ok, "train and eval compose (accelerator gpu, bf16-mixed)",
                          "the commands do not compose")
            return
        res = run_boxed(train, self.box("3"), log, self.env)
        trained = read_json(train_dir / "metrics.json") or {}
        checkpoints = sorted(p.name for p in (train_dir / "checkpoints").glob("*.ckpt"))
        details.update(train=res, train_metrics=trained, checkpoints=checkpoints)
        problems = []
        if res["rc"] != 0 or not trained:
            problems.append(f"training {'timed out' if res['timed_out'] else 'failed'} (exit {res['rc']})")
        else:
            if trained.get("epoch") != 2:
                problems.append(f"epoch {trained.get('epoch')} != 2")
            if not trained.get("val/top1", 0) > 0.6:  # chance is 0.1; the CPU run of the same recipe reaches ~0.9
                problems.append(f"val/top1 {trained.get('val/top1')} <= 0.6: it did not learn")
            if "last.ckpt" not in checkpoints or not any(c.startswith("best") for c in checkpoints):
                problems.append(f"checkpoints missing: {checkpoints}")
            if self.box("3") < MIN_USEFUL_S:
                problems.append("no time left for task.mode=eval")
            else:
                res = run_boxed(evaluate, self.box("3"), log, self.env)
                evaluated = read_json(eval_dir / "metrics.json") or {}
                details.update(eval=res, eval_metrics=evaluated)
                if res["rc"] != 0 or not evaluated:
                    problems.append(f"task.mode=eval failed (exit {res['rc']})")
                elif abs(evaluated.get("val/top1", -1) - trained["val/top1"]) > 0.01:
                    problems.append(f"eval top1 {evaluated.get('val/top1')} != trained {trained['val/top1']}")
        record["status"] = "pass" if not problems else ("timeout" if res["timed_out"] else "fail")
        record["summary"] = "; ".join(problems) or (
            f"val/top1 {trained['val/top1']:.3f} after 2 epochs ({details['train']['seconds']} s), "
            f"eval {details['eval_metrics']['val/top1']:.3f} ({details['eval']['seconds']} s)"
        )

    # stage 4 ------------------------------------------------------------------------------------------------
    def mmcv_source(self) -> Path | None:
        found = sorted(self.args.wheels.glob("onedl_mmcv-*.tar.gz")) if self.args.wheels.is_dir() else []
        return found[-1] if found else None

    def start_mmcv_build(self, info: dict) -> None:
        source = self.mmcv_source()
        if source is None or not shutil.which("nvcc"):
            return
        jobs = max(1, (os.cpu_count() or 4) - 2)
        arch = info.get("capability", "9.0")
        env = {**self.env, "FORCE_CUDA": "1", "MMCV_WITH_OPS": "1", "TORCH_CUDA_ARCH_LIST": arch, "MAX_JOBS": str(jobs),
               "MMCV_SDIST": str(source), "RAVLT_WHEEL_CACHE": str(self.work / "mmcv-wheel"),
               "PIP_TARGET": str(self.site), "PIP_NO_INDEX": "1"}  # fmt: skip
        log = self.work / "mmcv_build.log"
        with open(log, "w") as out:
            out.write(f"# MAX_JOBS={jobs} TORCH_CUDA_ARCH_LIST={arch}, nice 19, beside stages 1-3\n")
            out.flush()
            proc = subprocess.Popen(["nice", "-n", "19", "bash", str(ROOT / "tools" / "build_mmcv.sh"), self.python],
                                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)  # fmt: skip
        self.build = dict(proc=proc, start=time.monotonic(), jobs=jobs, arch=arch, source=source.name, log=log)

    def building(self) -> str | None:
        """What runs beside the current stage: the mmcv build, while it does."""
        if self.build and self.build["proc"].poll() is None:
            return f"the mmcv build (nice 19, {self.build['jobs']} jobs on {os.cpu_count()} CPUs)"
        return None

    def stop_build(self) -> None:
        if self.build and self.build["proc"].poll() is None:
            os.killpg(self.build["proc"].pid, signal.SIGKILL)
            self.build["proc"].wait()

    def mmcv_has_cuda_ops(self) -> bool:
        """mmcv already installed with CUDA ops (a contributor's own .venv): nothing to build."""
        return bool(self.mmcv_cuda) and not str(self.mmcv_cuda).startswith(("error", "not available"))

    def mm_cmd(self, name: str, run_dir: Path, *extra: str) -> list[str]:
        """The train.py command of one stage-4 demo, writing to ``run_dir``."""
        common = ["model=ravlt_t", f"hardware={self.hardware}", "logger=csv", "task.vis_interval=0", *extra]
        if name == "mask_rcnn_demo":
            # 300 training images at 15 a batch: one epoch is 20 iterations, then one validation
            task = ["task=detection", "detector=mask_rcnn_demo", "dataset=shapes_coco", "task.max_epochs=1",
                    "task.batch_size=15", "task.val_interval=1"]  # fmt: skip
        else:
            task = ["task=segmentation", "segmentor=fpn_demo", "dataset=shapes_ade", f"task.max_iters={MM_ITERATIONS}",
                    f"task.val_interval={MM_ITERATIONS}"]  # fmt: skip
        return self.python_cmd("train.py", *task, *common, f"hydra.run.dir={run_dir}")

    def wait_for_mmcv(self, record: dict) -> bool:
        """Wait for the background build (keeping a minute for the demos); False, with the status set, when
        there is no mmcv with CUDA ops to run them on."""
        details = record["details"]
        if self.mmcv_has_cuda_ops() or self.args.rehearse:
            details["build"] = dict(prebuilt=self.mmcv_cuda)
            if str(self.mmcv_cuda).startswith("error"):
                record.update(status="fail", summary=f"mmcv is not importable: {self.mmcv_cuda}")
                return False
            return True
        if self.build is None:
            why = "nvcc not found" if details["source"] else "no onedl-mmcv source carried (tools/gpu_wheels.sh)"
            record.update(status="fail", summary=f"no mmcv build: {why}")
            return False
        proc = self.build["proc"]
        try:
            proc.wait(timeout=max(self.box("4") - 60, 1))
        except subprocess.TimeoutExpired:
            self.stop_build()
            record.update(
                status="timeout",
                summary=f"the mmcv build did not finish in {time.monotonic() - self.build['start']:.0f} s",
            )
        details["build"] = dict(jobs=self.build["jobs"], arch=self.build["arch"], rc=proc.returncode,
                                seconds=round(time.monotonic() - self.build["start"], 1),
                                note="wall time beside stages 1-3, nice 19")  # fmt: skip
        if proc.returncode != 0:
            if record["status"] != "timeout":
                record.update(status="fail", summary=f"the mmcv build failed (exit {proc.returncode})")
            record["log_tail"] = tail(self.build["log"], 3000)
            return False
        return True

    def stage4(self, record: dict, log: Path) -> None:
        details = record["details"] = {}
        source = self.mmcv_source()
        details["source"] = source.name if source else None
        if not self.live:
            composed = [run_boxed(self.mm_cmd(name, self.work / name) + ["--cfg", "job"], self.box("4") / 2,
                                  log, self.env)
                        for name in MM_DEMOS]  # fmt: skip
            details["compose"] = composed
            missing = "" if source else "; no onedl-mmcv source in the wheels folder"
            self.prepared(record, composed, True, "both demo commands compose" + missing,
                          "the demo commands do not compose")
            return
        if not self.wait_for_mmcv(record):
            return
        problems = []
        for name in MM_DEMOS:
            failure = self.mm_demo(details, name, log)
            if failure:
                problems.append(failure)
                if "timed out" not in failure and self.box("4") >= MIN_USEFUL_S:  # mmcv's CUDA ops, or bf16?
                    problems.append(
                        f"in fp32 (hardware.precision=32-true): {self.mm_demo(details, name, log, fp32=True) or 'ok'}"
                    )
        record["status"] = "pass" if not problems else "fail"
        build = details["build"].get("seconds")
        done = [
            f"{n} {details[n]['run']['seconds']} s" for n in MM_DEMOS if n in details and n not in " ".join(problems)
        ]
        record["summary"] = "; ".join(
            [f"mmcv built in {build} s" if build
             else f"mmcv as installed (CUDA ops: {details['build'].get('prebuilt')})"]
            + problems + done
        )

    def mm_demo(self, details: dict, name: str, log: Path, fp32: bool = False) -> str | None:
        """Run one demo for MM_ITERATIONS iterations; its record goes to ``details``; returns what went wrong."""
        key = f"{name}_fp32" if fp32 else name
        if self.box("4") < MIN_USEFUL_S:
            return f"{key}: no time left"
        run_dir = self.work / "stage4" / key
        cmd = self.mm_cmd(name, run_dir, *(["hardware.precision=32-true"] if fp32 else []))
        res = run_boxed(cmd, self.box("4"), log, self.env)
        metrics, progress = read_json(run_dir / "metrics.json"), mm_progress(run_dir)
        details[key] = dict(run=res, metrics=metrics or {}, **progress)
        if res["rc"] != 0 or metrics is None:
            return f"{key} {'timed out' if res['timed_out'] else 'failed'} (exit {res['rc']})"
        if progress.get("iterations") != MM_ITERATIONS:
            return f"{key} logged {progress.get('iterations')} training iterations, not {MM_ITERATIONS}"
        return None

    # all -----------------------------------------------------------------------------------------------------
    def run(self) -> int:
        try:
            self.stage("setup", self.setup)
            for name, fn in (("1", self.stage1), ("2", self.stage2), ("3", self.stage3), ("4", self.stage4)):
                if name in self.args.stages:
                    self.stage(name, fn)
        finally:
            self.stop_build()
            self.save()
        statuses = [s["status"] for s in self.report["stages"]]
        print(f"report: {self.out / 'gpu_check.md'} and {self.out / 'gpu_check.json'} ({self.report['elapsed_s']} s)")
        return 1 if any(s in ("fail", "timeout", "interrupted") for s in statuses) else 0


def mm_progress(run_dir: Path) -> dict:
    """Training iterations and loss of an mmengine run, from its vis_data/scalars.json (logged every 10)."""
    losses = []
    for path in run_dir.glob("*/vis_data/scalars.json"):
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if "loss" in row and "step" in row:
                losses.append((row["step"], row["loss"]))
    if not losses:
        return {}
    losses.sort()
    return dict(iterations=losses[-1][0], first_loss=losses[0][1], last_loss=losses[-1][1])


def parse_junit(path: Path) -> list[dict]:
    """Test cases of a junit XML (xunit1): name, outcome, seconds, recorded properties, failure message."""
    if not path.is_file():
        return []
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", None
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (node.get("message") or node.text or "")[:500]
                break
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        tests.append(dict(name=f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}", outcome=outcome,
                          seconds=float(case.get("time") or 0), properties=props, message=message))  # fmt: skip
    return tests


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bash tools/gpu_check.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="on a CPU machine: prepare every stage, run none on CUDA")
    mode.add_argument("--rehearse", action="store_true",
                      help="on a CPU machine: run the stages' real code on the CPU at toy sizes (figures meaningless)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "outputs" / "gpu_check"),
                   help="report folder (default: $OUT, else outputs/gpu_check)")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole run (default 540: 9 minutes)")
    p.add_argument("--stages", default="1,2,3,4", help="comma-separated stages to run after setup (default 1,2,3,4)")
    p.add_argument("--box", action="append", default=[], metavar="STAGE=SECONDS",
                   help="another time box for a stage, e.g. --box 2=120 (defaults: "
                   + ", ".join(f"{k}={v:.0f}" for k, v in BOXES.items()) + ")")
    p.add_argument("--wheels", type=Path, default=ROOT / ".whl",
                   help="carried wheels and the onedl-mmcv source (tools/gpu_wheels.sh)")
    p.add_argument("--site", type=Path, help="install target of the wheels (default: in the work folder)")
    p.add_argument("--work", type=Path, help="work folder (default: a new temporary one)")
    p.add_argument("--gpu-python", default="3.12", help="dry run: the Python version the wheels are installed for")
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--probe-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = argv
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in args.stages if s not in ("1", "2", "3", "4")]
    if bad:
        p.error(f"--stages: unknown stage {bad[0]!r}; the stages are 1, 2, 3, 4")
    args.boxes = {}
    for item in args.box:
        name, _, value = item.partition("=")
        try:
            args.boxes[name] = float(value)
        except ValueError:
            p.error(f"--box {item}: expected STAGE=SECONDS")
        if name not in BOXES:
            p.error(f"--box {item}: unknown stage {name!r}; one of {', '.join(BOXES)}")
    return args


def terminate(signum, frame):
    """SIGTERM / SIGHUP: unwind like Ctrl-C, so the running stage and the mmcv build (own process groups,
    which a killed parent would leave running) are stopped and the report is written."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.probe:
        result = probe(str(args.site) if args.site else None)
        args.probe_out.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    return Check(args).run()


if __name__ == "__main__":
    sys.exit(main())
