"""How every command of the project ends when its input is wrong: one line ``error: ...`` on stderr that says
what to change, and exit status 2 — no traceback. A traceback means a bug in the project; ``HYDRA_FULL_ERROR=1``
shows one for the input mistakes too.

Input mistakes are: our own :class:`~ravlt.errors.ConfigError` and the checkpoint / image errors, Hydra's
and OmegaConf's configuration errors (a wrong group option, a mistyped key, a missing required value),
Lightning's misconfiguration errors, and files that cannot be opened or written. A run stopped by the
cluster (:class:`~ravlt.errors.Preempted`) says where its checkpoint is and exits with ``128 + signal``.
"""
from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from collections.abc import Callable
from typing import TypeVar

from ravlt.errors import ConfigError, Preempted

T = TypeVar("T")
INPUT_ERROR_EXIT = 2
FULL_ERROR = "RAVLT_FULL_ERROR"  # the user's HYDRA_FULL_ERROR, kept for this process's children
FILE_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.ENOSPC, errno.EROFS}


def run_command(main: Callable[[], T]) -> T:
    """Call ``main`` and return what it returns; an input mistake becomes one ``error:`` line and exit
    status 2. A Hydra command uses it twice: around the decorated function (mistakes in composing the
    config) and inside it, around the work (or Hydra adds a line of its own before the error)."""
    os.environ.setdefault(FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR", "0"))
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing its own report
    try:
        return main()
    except Preempted as e:
        print(e, file=sys.stderr)
        sys.exit(e.exit_code)
    except Exception as e:
        line = None if os.environ[FULL_ERROR] == "1" else one_line(e)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT)


def one_line(e: BaseException) -> str | None:
    """The one-line report of an input mistake; None for anything else (a bug: its traceback is wanted)."""
    from hydra.errors import CompactHydraException, MissingConfigException, OverrideParseException
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    from ravlt.data.images import UnreadableImageError
    from ravlt.models.checkpoint import CheckpointMismatchError

    text = str(e)
    in_worker = "Original Traceback" in text  # a DataLoader worker's error: the original is the last line
    if in_worker:
        text = re.sub(r"^[\w.]+(Error|Exception): ", "", text.strip().splitlines()[-1])
    if isinstance(e, MissingConfigException) and e.options:
        group = (e.missing_cfg_file or "").rsplit("/", 1)[0]
        return f"{text.splitlines()[0].split(': ', 1)[-1]}; {group}=... takes one of: {', '.join(sorted(e.options))}"
    if isinstance(e, OverrideParseException):
        return f"cannot read the override {e.override!r}: {flatten(e.message)}"
    if isinstance(e, MissingMandatoryValue):
        return f"{e.full_key}=... is required: add it to the command line"
    if isinstance(e, (ConfigError, CheckpointMismatchError, UnreadableImageError, MisconfigurationException)):
        return flatten(text)
    if isinstance(e, (CompactHydraException, OmegaConfBaseException)):
        return flatten(text) + " (HYDRA_FULL_ERROR=1 shows where)"
    if isinstance(e, OSError) and e.errno in FILE_ERRNOS and e.filename:
        return f"{e.strerror}: {e.filename}"
    if isinstance(e, OSError) and in_worker:
        return text
    return None


def flatten(text: str) -> str:
    """A multi-line message as one line: option lists joined by commas, OmegaConf's detail lines and
    Hydra's search-path listing dropped."""
    parts: list[str] = []
    for line in text.splitlines():
        if line.startswith("Config search path"):
            break
        stripped = line.strip()
        if not stripped or stripped.startswith(("object_type=", "full_key:", "reference_type=")):
            continue
        if line.startswith("\t") and parts and parts[-1].endswith((":", ",")):
            parts[-1] += f" {stripped},"
        else:
            parts.append(stripped)
    return " ".join(parts).rstrip(",")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's one-line ``error:`` report (``--help`` for the usage)."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(INPUT_ERROR_EXIT)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def nonnegative_float(text: str) -> float:
    """An argparse type: a number >= 0."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value
