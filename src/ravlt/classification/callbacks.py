"""Lightning callbacks of the classification runs: unreadable-image report, W&B validation images and the
model summary."""

from __future__ import annotations

import logging

import lightning as L
import torch
from lightning.pytorch.callbacks import RichModelSummary
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only

from .transforms import denormalize

log = logging.getLogger(__name__)


class UnreadableImageReport(L.Callback):
    """Warns once per image file that could not be decoded (and so was left out of its batch) and reports
    how many there were when the run ends; the run itself carries on."""

    def __init__(self) -> None:
        self.paths: set[str] = set()

    def _note(self, batch) -> None:
        for path, reason in batch["unreadable"]:
            if path not in self.paths:
                self.paths.add(path)
                log.warning("skipping unreadable image %s (%s)", path, reason)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._note(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._note(batch)

    def _gather(self) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            every_rank: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(every_rank, sorted(self.paths))
            self.paths = set().union(*every_rank)

    def _report(self) -> None:
        self._gather()
        if self.paths:
            rank_zero_only(log.warning)(
                "%d unreadable image(s) were skipped (each named above); fix or remove them: %s",
                len(self.paths), ", ".join(sorted(self.paths)[:5]) + (" ..." if len(self.paths) > 5 else ""),
            )  # fmt: skip

    def on_fit_end(self, trainer, pl_module) -> None:
        self._report()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._report()


class ValidationImageGrid(L.Callback):
    """Logs the first validation images of every validation epoch to W&B, captioned true vs predicted."""

    def __init__(self, num_images: int = 16) -> None:
        self.num_images = num_images

    @rank_zero_only
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx != 0 or trainer.sanity_checking or not outputs or self.num_images <= 0:
            return
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers:
            return
        classes = trainer.datamodule.classes
        # W&B expects 0..255 pixel values
        images = (denormalize(batch["image"][: self.num_images].float()) * 255).round().to(torch.uint8).cpu()
        targets = batch["target"][: self.num_images].tolist()
        preds = outputs["preds"][: self.num_images].tolist()
        captions = [
            f"{'✓' if p == t else '✗'} true {classes[t]} / pred {classes[p]}"
            for t, p in zip(targets, preds, strict=True)
        ]
        for logger in loggers:
            logger.log_image("val/examples", list(images), step=trainer.global_step, caption=captions)


class ModelSummaryWithFlops(RichModelSummary):
    """Lightning's model summary whose "Total FLOPs" is the forward pass of one image at the training
    resolution. Lightning counts FLOPs only through an example input, under ``no_grad``, where torch's
    FLOP counter fails on modules fed parameter views (the blocks' DropPath), and prints 0 without one."""

    def __init__(self, max_depth: int = 1) -> None:
        super().__init__(max_depth=max_depth)
        self.forward_flops = 0

    def on_fit_start(self, trainer, pl_module) -> None:
        if self._max_depth and trainer.is_global_zero:
            size = pl_module.hparams.get("image_size") or 224
            self.forward_flops = pl_module.forward_flops(torch.zeros(1, 3, size, size, device=pl_module.device))
        super().on_fit_start(trainer, pl_module)

    def summarize(self, *args, total_flops: int = 0, **kwargs) -> None:
        RichModelSummary.summarize(*args, total_flops=self.forward_flops, **kwargs)
