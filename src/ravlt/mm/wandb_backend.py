"""mmengine's W&B backend without its code snapshot.

mmengine's ``WandbVisBackend.add_config`` calls ``wandb.run.log_code()`` rooted at the working directory:
W&B copies every ``.py`` file below it, a virtual environment included (from this repository with its
``.venv``: 18,887 files, 283 MB), into its artifact staging folder (``~/.local/share/wandb/artifacts/staging``)
— once per run, never cleaned, and uploaded by ``wandb sync``. This backend records the config and leaves
the code out; W&B records the run's git commit anyway (in the run's metadata), as for the classification runs.
"""
from __future__ import annotations

from mmengine.config import Config
from mmengine.visualization import WandbVisBackend as MMEngineWandbVisBackend
from mmengine.visualization.vis_backend import force_init_env

from .registry import VISBACKENDS


@VISBACKENDS.register_module()
class WandbVisBackend(MMEngineWandbVisBackend):
    """``type='ravlt.WandbVisBackend'``: the config goes to ``wandb.config``, no code artifact. It keeps
    mmengine's class name, the key ``ravlt.WandbDetectionImagesHook`` finds the backend by."""

    @force_init_env
    def add_config(self, config: Config, **kwargs) -> None:
        allow_val_change = self._init_kwargs.get("allow_val_change", False)
        self._wandb.config.update(config.to_dict(), allow_val_change=allow_val_change)
