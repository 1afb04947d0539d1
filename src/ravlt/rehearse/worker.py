"""One phase of a rehearsal row in a fresh process, as a user's ``python train.py ...`` would run it:

    python -m ravlt.rehearse.worker RUN train  FOLDER INPUTS               # from model.pretrained
    python -m ravlt.rehearse.worker RUN resume FOLDER INPUTS --from CKPT   # ckpt_path=CKPT

The rehearsal's overrides (:meth:`ravlt.rehearse.runs.Run.rehearsal`) are composed into the project's
Hydra config and handed to ``ravlt.tasks.run``, the runner ``train.py`` calls. On an exception the first
line of its message goes to ``FOLDER/error.txt`` (the traceback to the log) and the exit code is 1.
"""
from __future__ import annotations

import argparse
import traceback
from pathlib import Path

from ravlt.files import write_text_atomically

from .inputs import Inputs
from .runs import PAPER_RUNS, Run

ERROR_FILE = "error.txt"


def overrides(run: Run, inputs: Inputs, folder: Path, resume_from: Path | None = None) -> list[str]:
    return run.rehearsal(
        str(inputs.dataset_root(run.task)), str(inputs.pretrained(run.size)), str(folder),
        str(resume_from) if resume_from else None,
    )  # fmt: skip


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One phase of a rehearsal row (started by python -m ravlt.rehearse).")
    parser.add_argument("run", choices=[r.name for r in PAPER_RUNS])
    parser.add_argument("phase", choices=["train", "resume"])
    parser.add_argument("folder", type=Path, help="the phase's output folder")
    parser.add_argument("inputs", type=Path, help="the folder ravlt.rehearse.inputs.prepare filled")
    parser.add_argument("--from", dest="resume_from", type=Path, help="the checkpoint to resume (phase resume)")
    args = parser.parse_args(argv)
    run = next(r for r in PAPER_RUNS if r.name == args.run)
    args.folder.mkdir(parents=True, exist_ok=True)
    try:
        from ravlt.tasks import run as run_task

        from .configs import compose_config

        run_task(
            compose_config(overrides(run, Inputs(args.inputs.absolute()), args.folder.absolute(), args.resume_from))
        )
    except Exception as e:  # the row fails with its first line; the traceback goes to the log
        traceback.print_exc()
        write_text_atomically(args.folder / ERROR_FILE, first_line(e) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
