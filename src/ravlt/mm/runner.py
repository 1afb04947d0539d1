"""Running an mmengine config: train or evaluate, in this process or one spawned process per device.

:func:`run` builds mmengine's Runner from a finished config (:mod:`ravlt.mm.settings` makes it), trains
(resuming from ``ckpt_path`` when it is an mmengine training checkpoint, otherwise starting from its
weights) or evaluates ``ckpt_path`` (loaded strictly), and returns the last evaluation's metrics as
``{name: float}``.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.hooks import Hook

from ravlt.commands import one_line
from ravlt.errors import ConfigError, Preempted
from ravlt.models.checkpoint import load_strictly, read_checkpoint, stored_weights
from ravlt.preemption import SignalCatcher, requeued_slurm_job

log = logging.getLogger(__name__)


class KeepLastMetrics(Hook):
    """Remembers the metrics of the last validation / test epoch (the Runner only returns test's)."""

    priority = "LOWEST"

    def __init__(self):
        self.metrics: dict[str, float] = {}

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.metrics = dict(metrics or {})

    after_test_epoch = after_val_epoch


def is_training_checkpoint(checkpoint) -> bool:
    """An mmengine training checkpoint (resumable): weights plus optimizer and loop state."""
    return {"state_dict", "optimizer", "meta"} <= checkpoint.keys()


def _floats(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) or hasattr(v, "__float__")}


def run_local(mm_cfg: Config, mode: str = "train", ckpt_path: str | None = None) -> dict[str, float]:
    """Build the Runner in this process and train or evaluate; returns the last evaluation's metrics."""
    from mmengine.runner import Runner

    mm_cfg = copy.deepcopy(mm_cfg)
    if mode not in ("train", "eval"):
        raise ConfigError(f"task.mode must be 'train' or 'eval', got {mode!r}")
    checkpoint = Path(ckpt_path).expanduser().resolve() if ckpt_path else None
    stored = read_checkpoint(checkpoint, "ckpt_path") if checkpoint is not None else None
    if mode == "eval" and checkpoint is None:
        log.warning("task.mode=eval without ckpt_path: evaluating freshly initialised weights")
    if mode == "eval" and stored is not None and not any(k.startswith("backbone.") for k in stored_weights(stored)):
        raise ConfigError(
            f"ckpt_path={checkpoint} holds the weights of a RAVLT alone (a classification or backbone checkpoint), "
            "not of a whole detector / segmentor: evaluate a checkpoint that training this task wrote "
            "(<run dir>/epoch_N.pth or iter_N.pth), or train from these weights with model.pretrained=..."
        )
    if mode == "train" and checkpoint is not None:
        if is_training_checkpoint(stored):
            mm_cfg.resume, mm_cfg.load_from = True, str(checkpoint)
        else:
            log.info("ckpt_path %s holds weights only: training starts from them", checkpoint)
            mm_cfg.resume, mm_cfg.load_from = False, str(checkpoint)
    elif mode == "train" and requeued_slurm_job() and (Path(mm_cfg.work_dir) / "last_checkpoint").is_file():
        log.info("requeued SLURM job: resuming from the last checkpoint in %s", mm_cfg.work_dir)
        mm_cfg.resume, mm_cfg.load_from = True, None  # mmengine reads work_dir/last_checkpoint

    if mm_cfg.get("launcher", "none") != "none" and mm_cfg.env_cfg.dist_cfg.backend == "gloo":
        # CPU DDP: mmengine's own init calls torch.cuda.set_device, which a CPU-only torch lacks
        if not torch.distributed.is_initialized():
            init_cpu_process_group()
    runner = Runner.from_cfg(mm_cfg)
    keeper = KeepLastMetrics()
    runner.register_hook(keeper)
    if mode == "train":
        runner.train()
    else:
        if checkpoint is not None:
            load_strictly(runner.model, stored_weights(stored), f"ckpt_path={checkpoint}")
        runner.test()
    return _floats(keeper.metrics)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launched_externally() -> bool:
    """This process is one rank of a run that torchrun or srun started (one process per device)."""
    return "RANK" in os.environ or "LOCAL_RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1


def init_cpu_process_group() -> None:
    """A gloo process group from torchrun's variables, or from srun's under SLURM (MASTER_ADDR: the first
    node of the job, MASTER_PORT: from the job id, as Lightning derives them)."""
    env = os.environ
    if "RANK" not in env and "SLURM_PROCID" in env:
        env.update(RANK=env["SLURM_PROCID"], WORLD_SIZE=env["SLURM_NTASKS"], LOCAL_RANK=env.get("SLURM_LOCALID", "0"))
        env.setdefault("MASTER_PORT", str(15000 + int(env.get("SLURM_JOB_ID", "0")[-4:] or 0)))
        if "MASTER_ADDR" not in env:
            env["MASTER_ADDR"] = first_slurm_node(env.get("SLURM_NODELIST", ""))
    torch.distributed.init_process_group("gloo")


def first_slurm_node(nodelist: str) -> str:
    done = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True) \
        if nodelist and shutil.which("scontrol") else None
    if done is None or done.returncode != 0 or not done.stdout.split():
        raise ConfigError(f"cannot tell the first node of SLURM_NODELIST={nodelist!r} (scontrol); export MASTER_ADDR")
    return done.stdout.split()[0]


def _spawned_worker(
    local_rank: int, devices: int, node_rank: int, nodes: int, address: str, port: int,
    mm_cfg: Config, mode: str, ckpt_path, outcome_dir: str,
) -> None:  # fmt: skip
    """One spawned process. What it ends with (metrics, an input error, a preemption) goes to
    ``outcome_dir/<rank>.json`` for the parent, which sees only a failed child otherwise."""
    rank = node_rank * devices + local_rank
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(devices * nodes),
                      MASTER_ADDR=address, MASTER_PORT=str(port))  # fmt: skip
    if mm_cfg.get("custom_imports"):  # Config.fromfile ran them in the parent process only
        from mmengine.utils import import_modules_from_strings

        import_modules_from_strings(**mm_cfg.custom_imports)
    if mm_cfg.env_cfg.dist_cfg.backend == "gloo":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))  # the processes share the cores
    outcome = Path(outcome_dir) / f"{rank}.json"
    try:
        metrics = run_local(mm_cfg, mode, ckpt_path)
    except Preempted as e:
        outcome.write_text(json.dumps({"preempted": [e.signum, e.step, e.checkpoint, e.requeued]}))
        raise  # a failed child makes spawn stop the others
    except Exception as e:
        line = one_line(e)
        if line is not None:
            outcome.write_text(json.dumps({"error": line}))
        raise
    if rank == 0:
        outcome.write_text(json.dumps({"metrics": metrics}))


def run(
    mm_cfg: Config, mode: str = "train", ckpt_path: str | None = None, devices: int = 1, cpu: bool = True,
    nodes: int = 1,
) -> dict[str, float]:  # fmt: skip
    """Train or evaluate with mmengine's Runner (``cpu``: hide any GPU, which mmengine would pick).

    A distributed run that no launcher started (torchrun, srun) spawns one process per device of this
    node here; with several ``nodes`` each takes its ranks from ``NODE_RANK`` and meets the others at
    ``MASTER_ADDR:MASTER_PORT``. Global rank 0's metrics are returned (empty on the other nodes); an input
    error or a preemption in a spawned process is raised here as :class:`ConfigError` / :class:`Preempted`.
    While the workers run, this process ignores the preemption signals: they are the workers' to handle
    (SLURM signals every process; by hand, signal the process group).
    """
    if cpu and torch.cuda.is_available():
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if mm_cfg.get("launcher", "none") == "none" or launched_externally():
        return run_local(mm_cfg, mode, ckpt_path)
    if ckpt_path:  # refused here rather than once per spawned process
        read_checkpoint(Path(ckpt_path).expanduser().resolve(), "ckpt_path")
    node_rank = int(os.environ.get("NODE_RANK", "0"))
    address = os.environ.get("MASTER_ADDR", "127.0.0.1")
    port = int(os.environ["MASTER_PORT"]) if "MASTER_PORT" in os.environ else _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        args = (devices, node_rank, nodes, address, port, mm_cfg, mode, ckpt_path, tmp)
        waiting = SignalCatcher()  # a preemption signal is the workers' to handle; this process waits for them
        waiting.install()
        try:
            torch.multiprocessing.spawn(_spawned_worker, args=args, nprocs=devices)
        except torch.multiprocessing.ProcessException:
            outcomes = [json.loads(f.read_text()) for f in sorted(Path(tmp).glob("*.json"))]
            preempted = next((o["preempted"] for o in outcomes if "preempted" in o), None)
            if preempted:
                raise Preempted(*preempted) from None
            error = next((o["error"] for o in outcomes if "error" in o), None)
            if error:
                raise ConfigError(error) from None
            raise
        finally:
            waiting.restore()
        outcome = Path(tmp) / f"{node_rank * devices}.json"
        return json.loads(outcome.read_text())["metrics"] if node_rank == 0 else {}
