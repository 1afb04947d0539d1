"""A Lightning callback for the preemption tests: at a given optimizer step the run sends itself (or its
whole process group, as SLURM does) a real signal, so the test knows where it arrived."""
import os
import signal

import lightning as L


class SignalAtStep(L.Callback):
    def __init__(self, step: int, name: str = "SIGUSR1", group: bool = False):
        self.step, self.signum, self.group = step, signal.Signals[name], group

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            if self.group:
                os.killpg(os.getpgid(0), self.signum)  # the DataLoader workers too
            else:
                os.kill(os.getpid(), self.signum)
