"""Errors every part of the project raises alike."""
from __future__ import annotations

import signal


class ConfigError(ValueError):
    """A configuration that cannot run, with what to change. ``train.py`` prints it as one line."""


class Preempted(Exception):
    """A training run stopped by a signal from the cluster after writing a resumable checkpoint.

    The command exits with ``128 + signal`` (what the shell reports for a process the signal ended).
    """

    def __init__(self, signum: int, step: int, checkpoint: str, requeued: bool):
        self.signum, self.step, self.checkpoint, self.requeued = signum, step, checkpoint, requeued
        then = "the requeued job resumes from it" if requeued else f"resume with ckpt_path={checkpoint}"
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at step {step}: resumable checkpoint written to {checkpoint}; "
            f"{then}"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
