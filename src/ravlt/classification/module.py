"""The classification LightningModule: a timm model trained with the DeiT-style recipe of the paper."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import lightning as L
import timm
import torch
from lightning.fabric.utilities.throughput import measure_flops
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn import functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

import ravlt.models  # noqa: F401  (registers the RAVLT models with timm)
from ravlt.tools.compile import activation_memory_budget, checked_budget, inductor_cache_per_cpu_capability

log = logging.getLogger(__name__)


def accuracy_metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
        },
        prefix=prefix,
    )


class ImageClassifier(L.LightningModule):
    """``timm.create_model(model_name)`` trained with Mixup / CutMix and the soft-target loss, AdamW without
    weight decay on norms, biases and LayerScale, a per-step cosine schedule with linear warm-up, and a
    weight EMA that is evaluated (``val/ema_*``) and checkpointed (``model_ema.*``) beside the raw weights.

    Args:
        model_name: a timm model name, e.g. ``ravlt_t``.
        num_classes: size of the classifier.
        model_kwargs: extra ``timm.create_model`` arguments (``drop_path_rate``, ``attn_types``, ...).
        batch_size: images per device; with the world size and gradient accumulation it gives the global
            batch that the learning rate and the EMA decay are scaled to.
        optimizer: ``name`` (a timm optimizer), ``lr``, ``lr_base_batch`` (lr is ``lr × global batch /
            lr_base_batch``; null: not scaled), ``weight_decay`` and the optimizer's own arguments.
        scheduler: ``name`` (a timm scheduler), ``warmup_epochs``, ``warmup_lr``, ``min_lr``; stepped
            after every optimizer step.
        mixup: ``timm.data.Mixup`` arguments (``mixup_alpha``, ``cutmix_alpha``, ``prob``,
            ``switch_prob``, ``mode``); both alphas 0 disables it.
        label_smoothing: folded into the Mixup targets, or a label-smoothing loss without Mixup.
        ema: ``enabled``, ``decay`` (per step at the global batch ``reference_batch``, scaled as
            ``decay ** (global batch / reference_batch)``; null reference: not scaled) and ``warmup``
            (timm's decay warm-up, for short schedules).
        compile: ``torch.compile`` the model.
        compile_memory_budget: with ``compile``, the share (0–1) of the activations torch's default
            partition keeps for backward that the compiled training step may keep (the rest is recomputed;
            :mod:`ravlt.tools.compile`); null: torch's default.
        class_names, image_size: the dataset's class names (index order) and training resolution; not
            used in training, saved with the checkpoint's hyper-parameters for evaluation and prediction.
    """

    def __init__(
        self,
        model_name: str,
        num_classes: int,
        model_kwargs: Mapping | None = None,
        batch_size: int = 128,
        optimizer: Mapping | None = None,
        scheduler: Mapping | None = None,
        mixup: Mapping | None = None,
        label_smoothing: float = 0.0,
        ema: Mapping | None = None,
        compile: bool = False,
        compile_memory_budget: float | None = None,
        class_names: Sequence[str] | None = None,
        image_size: int | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = timm.create_model(model_name, num_classes=num_classes, **dict(model_kwargs or {}))

        mixup = dict(mixup or {})
        self.mixup = None
        if mixup.get("mixup_alpha", 0) > 0 or mixup.get("cutmix_alpha", 0) > 0:
            self.mixup = Mixup(**mixup, label_smoothing=label_smoothing, num_classes=num_classes)
            self.criterion = SoftTargetCrossEntropy()
        elif label_smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(smoothing=label_smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()

        ema = dict(ema or {})
        self.model_ema = None
        if ema.get("enabled"):
            self.model_ema = ModelEmaV3(self.model, use_warmup=bool(ema.get("warmup")))
            self.model_ema.requires_grad_(False)  # updated by averaging only; DDP must not wait for its gradients
        self.compile_memory_budget = checked_budget(compile_memory_budget) if compile else None
        if compile:
            inductor_cache_per_cpu_capability()
            self.model.compile()  # in place: the state-dict keys stay those of the plain model
        self.flops_per_batch: int | None = None  # read by Lightning's ThroughputMonitor
        self.val_metrics = accuracy_metrics(num_classes, "val/")
        self.val_ema_metrics = accuracy_metrics(num_classes, "val/ema_") if self.model_ema is not None else None

    # --- optimisation ----------------------------------------------------------------------------
    @property
    def global_batch_size(self) -> int:
        trainer = self.trainer
        return self.hparams.batch_size * trainer.world_size * trainer.accumulate_grad_batches

    @staticmethod
    def scale_to_batch(value: float, global_batch: int, reference: int | None, power: bool = False) -> float:
        """``value × global_batch / reference`` (or ``value ** (global_batch / reference)``); null: as is."""
        if not reference:
            return value
        ratio = global_batch / reference
        return value**ratio if power else value * ratio

    def on_fit_start(self) -> None:
        if self.model_ema is not None:
            ema = self.hparams.ema
            self.model_ema.decay = self.scale_to_batch(
                ema["decay"], self.global_batch_size, ema.get("reference_batch"), power=True
            )
            log.info("EMA decay per step: %.6g (global batch %d)", self.model_ema.decay, self.global_batch_size)

    def create_optimizer(self, global_batch: int) -> torch.optim.Optimizer:
        """The timm optimizer, lr scaled to ``global_batch``; no weight decay on 1-D parameters (norms,
        biases) and on ``model.no_weight_decay()`` (LayerScale)."""
        opt = dict(self.hparams.optimizer)
        name = opt.pop("name")
        lr = self.scale_to_batch(opt.pop("lr"), global_batch, opt.pop("lr_base_batch", None))
        if "betas" in opt:
            opt["betas"] = tuple(opt["betas"])
        log.info("lr %.3g for a global batch of %d", lr, global_batch)
        return create_optimizer_v2(self.model, opt=name, lr=lr, filter_bias_and_bn=True, **opt)

    def create_scheduler(self, optimizer: torch.optim.Optimizer, max_epochs: int, steps_per_epoch: int):
        """The timm scheduler over ``max_epochs``, updated per optimizer step (``step_update``)."""
        sched = dict(self.hparams.scheduler)
        scheduler, _ = create_scheduler_v2(
            optimizer,
            sched=sched.pop("name"),
            num_epochs=max_epochs,
            step_on_epochs=False,
            updates_per_epoch=steps_per_epoch,
            **sched,
        )
        return scheduler

    def configure_optimizers(self):
        optimizer = self.create_optimizer(self.global_batch_size)
        max_epochs = max(1, self.trainer.max_epochs or 1)
        steps_per_epoch = max(1, math.ceil(self.trainer.estimated_stepping_batches / max_epochs))
        scheduler = self.create_scheduler(optimizer, max_epochs, steps_per_epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def lr_scheduler_step(self, scheduler, metric) -> None:
        scheduler.step_update(num_updates=self.global_step)

    # --- training ---------------------------------------------------------------------------------
    def on_train_batch_start(self, batch: Mapping, batch_idx: int) -> None:
        if self.flops_per_batch is None and len(batch["image"]):
            self.flops_per_batch = self.train_flops_per_image(batch["image"][:1]) * len(batch["image"])

    def train_flops_per_image(self, image: torch.Tensor) -> int:
        """Training FLOPs of one image, 3x the counted forward (backward costs about twice the forward), for
        the ThroughputMonitor's FLOP/s and MFU."""
        return 3 * self.forward_flops(image)

    def forward_flops(self, image: torch.Tensor) -> int:
        """FLOPs of the model's forward pass on ``image``. Forward only (no backward: DDP would take the
        gradients for a training step's) and in eval mode (BatchNorm statistics stay as they are)."""
        was_training = self.model.training
        self.model.eval()
        # .forward, not __call__: counts the plain model even when it is compiled
        flops = measure_flops(self.model, lambda: self.model.forward(image))
        self.model.train(was_training)
        return flops

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def training_step(self, batch: Mapping, batch_idx: int):
        images, targets = batch["image"], batch["target"]
        if self.mixup is not None and len(images) % 2:
            images, targets = images[:-1], targets[:-1]  # Mixup pairs the batch with its reverse
        if len(images) == 0:  # every image of the batch was unreadable
            return None
        if self.mixup is not None:
            images, targets = self.mixup(images, targets)
        with activation_memory_budget(self.compile_memory_budget):
            loss = self.criterion(self.model(images), targets)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.model_ema is not None:
            self.model_ema.update(self.model, step=self.global_step)

    # --- evaluation -------------------------------------------------------------------------------
    def validation_step(self, batch: Mapping, batch_idx: int):
        images, targets = batch["image"], batch["target"]
        if len(images) == 0:
            return None
        logits = self.model(images)
        self.log("val/loss", F.cross_entropy(logits, targets), sync_dist=True, batch_size=len(images))
        self.val_metrics.update(logits, targets)
        self.log_dict(self.val_metrics, prog_bar=True, batch_size=len(images))
        if self.model_ema is not None:
            ema_logits = self.model_ema(images)
            self.log("val/ema_loss", F.cross_entropy(ema_logits, targets), sync_dist=True, batch_size=len(images))
            self.val_ema_metrics.update(ema_logits, targets)
            self.log_dict(self.val_ema_metrics, batch_size=len(images))
        return {"preds": logits.argmax(dim=1)}
