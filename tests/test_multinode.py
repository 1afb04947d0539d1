"""Two "nodes" of one process each on this machine, started as srun starts the tasks of a SLURM job (ranks
and node ids 0 / 1 in SLURM's variables, MASTER_ADDR 127.0.0.1, gloo): the path `hardware=slurm` takes,
without SLURM. Each run must finish on both nodes (no deadlock at evaluation or at the end) with one
metrics file and one set of checkpoints, on rank 0; classification must match one node with two processes."""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ravlt.data.shapes_ade import ShapesADESpec, generate_shapes_ade

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CLASSIFICATION = ["task=classification", "experiment=digits_demo", "logger=csv", "task.progress_bar=false",
                  "task.max_epochs=1", "task.batch_size=8", "+task.trainer.limit_train_batches=4",
                  "+task.trainer.limit_val_batches=3"]  # fmt: skip
TWO_NODES = ["hardware=slurm_cpu", "hardware.num_nodes=2", "hardware.devices=1", "hardware.num_workers=0"]
TINY = ShapesADESpec(num_train=8, num_val=4, image_size=128, seed=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(data_dir: Path, **extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src"), "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1",
            "RAVLT_DATA_DIR": str(data_dir), **extra}  # fmt: skip


def slurm_task(rank: int, port: int) -> dict:
    """What srun sets for task ``rank`` of a 2-node job with one task per node."""
    return {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "ravlt-test", "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1",
            "SLURM_NNODES": "2", "SLURM_PROCID": str(rank), "SLURM_NODEID": str(rank), "SLURM_LOCALID": "0",
            "SLURM_NODELIST": "127.0.0.1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip


def run_two_nodes(args: list[str], out: Path, data_dir: Path, timeout: float = 900) -> list[str]:
    """``train.py ARGS`` as the two tasks of a SLURM job, each with its own run directory ``out/node<i>``;
    both must exit 0 within ``timeout`` (a deadlock fails the test instead of hanging it)."""
    port = free_port()
    nodes = [
        subprocess.Popen([sys.executable, "train.py", *args, f"hydra.run.dir={out / f'node{rank}'}"], cwd=PROJECT_ROOT,
                         env=environment(data_dir, **slurm_task(rank, port)), text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
        for rank in (0, 1)
    ]  # fmt: skip
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=timeout)[0])
    finally:
        for node in nodes:
            node.kill()
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-4000:]
    return outputs


@pytest.fixture(scope="module")
def one_node(tmp_path_factory) -> dict:
    """hardware=cpu_ddp: one node, two processes (Lightning starts the second)."""
    out, data = tmp_path_factory.mktemp("one_node"), tmp_path_factory.mktemp("data")
    done = subprocess.run([sys.executable, "train.py", *CLASSIFICATION, "hardware=cpu_ddp", f"hydra.run.dir={out}"],
                          cwd=PROJECT_ROOT, env=environment(data), capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "distributed_backend=gloo" in done.stdout + done.stderr
    yield {"output": done.stdout + done.stderr, "dir": out, "data": data}
    shutil.rmtree(out, ignore_errors=True)


@pytest.mark.slow
def test_two_process_ddp_on_the_cpu(one_node):
    assert "Starting with 2 processes" in one_node["output"]
    metrics = json.loads((one_node["dir"] / "metrics.json").read_text())
    assert metrics["global_step"] == 4 and 0 <= metrics["val/top1"] <= 1
    assert (one_node["dir"] / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_classification_on_two_nodes_matches_one_node_with_two_processes(one_node, tmp_path):
    outputs = run_two_nodes([*CLASSIFICATION, *TWO_NODES], tmp_path, one_node["data"])
    for rank, output in enumerate(outputs):  # Lightning took each node's rank from SLURM's variables
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in output
    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    assert (node0 / "checkpoints" / "last.ckpt").exists() and not (node1 / "checkpoints").exists()
    assert not (node1 / "metrics.json").exists()
    metrics = json.loads((node0 / "metrics.json").read_text())
    reference = json.loads((one_node["dir"] / "metrics.json").read_text())
    assert metrics["global_step"] == reference["global_step"] == 4
    for key in ("val/top1", "val/top5", "val/loss", "val/ema_top1", "train/loss"):
        assert metrics[key] == pytest.approx(reference[key], rel=1e-5, abs=1e-6), key


@pytest.mark.slow
def test_segmentation_on_two_nodes(tmp_path):
    """mmengine under SLURM's variables on the CPU: mmengine's own SLURM setup needs CUDA, so the runner
    starts gloo from them (ravlt.mm.runner.init_cpu_process_group)."""
    root = generate_shapes_ade(tmp_path / "shapes_ade", TINY)
    spec = ",".join(f"{k}:{getattr(TINY, k)}" for k in ("num_train", "num_val", "image_size", "seed"))
    args = ["task=segmentation", "model=ravlt_t", "segmentor=fpn_demo", "dataset=shapes_ade", f"dataset.root={root}",
            f"dataset.generator_args={{{spec}}}", *TWO_NODES, "logger=none", "task.max_iters=2", "task.val_interval=2",
            "task.batch_size=1", "task.vis_interval=0"]  # fmt: skip
    run_two_nodes(args, tmp_path, tmp_path)
    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    metrics = json.loads((node0 / "metrics.json").read_text())
    assert 0 <= metrics["mIoU"] <= 1 and metrics["invalid_label_pixels"] == 0
    assert (node0 / "iter_2.pth").is_file()
    assert not (node1 / "metrics.json").exists() and not list(node1.glob("*.pth"))
