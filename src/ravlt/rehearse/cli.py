"""``make rehearse`` / ``python -m ravlt.rehearse``: the paper's runs as shipped, a few steps each, on the CPU."""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from ravlt.commands import ArgumentParser
from ravlt.files import write_text_atomically

from .configs import changed_keys, compose_config
from .inputs import Inputs, prepare
from .row import rehearse
from .runs import PAPER_RUNS, Run, select

DEFAULT_TIMEOUT_S = 1800
REPORT_FIELDS = ("run", "status", "s_per_iter", "peak_rss_mib", "changed_keys", "error")
DESCRIPTION = """\
The paper's runs (all 25 by default) as shipped, for a few steps each on the CPU, through train.py's task
runner: one process trains from a checkpoint in the released layout and writes a checkpoint, a second one
resumes from it and runs the real evaluator, on data generated in the real dataset layouts at real image
sizes. The tool prints the config keys the rehearsal changes against the shipped command
(only what the CPU forces), a line per run as it finishes and the table at the end; <out>/report.json
holds one object per run. Exit code 0 when every run passed."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="python -m ravlt.rehearse",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="runs: " + ", ".join(r.name for r in PAPER_RUNS),
    )
    parser.add_argument("--runs", nargs="+", metavar="PATTERN",
                        help="only the runs matching these shell patterns, e.g. 'in1k-*' upernet-160k-s (default: all)")
    parser.add_argument("--out", type=Path, default=Path("outputs/rehearse"),
                        help="report.json and one folder per run (default: %(default)s)")
    parser.add_argument("--inputs", type=Path, default=None,
                        help="generated datasets and checkpoints, reused between rehearsals (default: <out>/inputs)")
    parser.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S,
                        help="seconds one run may take before it is stopped and failed (default: %(default)s)")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep each run's checkpoints (GBs for B/L)")
    parser.add_argument("--list", action="store_true", help="print the runs with the changes of each and stop")
    return parser.parse_args(argv)


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def machine() -> str:
    """The CPU class a timing belongs to: model, cores, threads per process (the workers inherit
    ``OMP_NUM_THREADS``) and the instruction set PyTorch's kernels use."""
    import torch

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                      if ln.startswith("model name")), model)  # fmt: skip
    kernels = torch.backends.cpu.get_cpu_capability()
    return (
        f"{model}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__} kernels {kernels}"
    )


def run_changes(run: Run, inputs: Inputs, folder: Path) -> dict[str, list]:
    where = (str(inputs.dataset_root(run.task)), str(inputs.pretrained(run.size)), str(folder))
    return changed_keys(compose_config(run.shipped(*where)), compose_config(run.rehearsal(*where)))


def describe_changes(run: Run, changes: dict[str, list]) -> str:
    lines = [f"{run.name}: {' '.join(o.format(size=run.size) for o in run.family.shipped)}, changed keys:"]
    lines += [f"    {key}: {shipped!r} -> {rehearsal!r}" for key, (shipped, rehearsal) in changes.items()]
    resumed = [o for o in run.length(2) if o not in run.length(1)]
    lines.append(f"    then resumed from its checkpoint with ckpt_path=... {' '.join(resumed)}")
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    header = ("run", "status", "s/iter", "img/iter", "peak RSS MiB", "error")
    lines = [header]
    for r in rows:
        lines.append((
            r["run"], r["status"],
            f"{r['s_per_iter']:.1f}" if r.get("s_per_iter") is not None else "-",
            str(r.get("images_per_iter") or "-"),
            f"{r['peak_rss_mib']:,}" if r.get("peak_rss_mib") is not None else "-",
            (r.get("error") or "")[:100],
        ))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def write_report(rows: list[dict], path: Path) -> None:
    """One object per run with exactly :data:`REPORT_FIELDS` (the table's images per iteration and the
    evaluator's metrics stay in the printout and the run's ``resume/metrics.json``)."""
    write_text_atomically(path, json.dumps([{k: row.get(k) for k in REPORT_FIELDS} for row in rows], indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Rehearse the chosen runs; 0 when every one passed, 1 otherwise (a wrong argument: ConfigError or
    the parser's one-line error, see :func:`ravlt.commands.run_command`)."""
    args = parse_args(argv)
    runs = select(args.runs)
    out = args.out.absolute()
    inputs = Inputs((args.inputs or out / "inputs").absolute())
    if args.list:
        for run in runs:
            print(describe_changes(run, run_changes(run, inputs, out / run.name / "train")))
        return 0

    print(f"rehearsing {len(runs)} run(s): train, checkpoint, resume, evaluate; on {machine()}", flush=True)
    started = time.monotonic()
    inputs = prepare(inputs.folder, runs)
    print(f"inputs ready in {inputs.folder} ({time.monotonic() - started:.0f} s)", flush=True)
    rows = []
    for i, run in enumerate(runs, 1):
        changes = run_changes(run, inputs, out / run.name / "train")
        print(f"[{i}/{len(runs)}] {describe_changes(run, changes)}", flush=True)
        begun = time.monotonic()
        row = rehearse(run, inputs, out / run.name, args.timeout, args.keep_checkpoints)
        row["changed_keys"] = changes
        rows.append(row)
        write_report(rows, out / "report.json")
        took = time.monotonic() - begun
        detail = row["error"]
        if row["status"] == "passed":
            evaluated = ", ".join(f"{k} {v:g}" for k, v in row["metrics"].items())
            detail = f"{row['s_per_iter']:.1f} s/iter, evaluator: {evaluated}"
        memory = f"peak RSS {row['peak_rss_mib']:,} MiB, " if row["peak_rss_mib"] else ""
        print(f"    {row['status']}: {detail} ({memory}{took:.0f} s; logs {out / run.name}/*/worker.log)", flush=True)
    print(f"\n{format_table(rows)}\n\n{sum(r['status'] == 'passed' for r in rows)}/{len(rows)} passed in "
          f"{(time.monotonic() - started) / 60:.1f} min on {machine()}; report: {out / 'report.json'}")  # fmt: skip
    return 0 if all(r["status"] == "passed" for r in rows) else 1
