"""The ``ravlt`` scope of the OpenMMLab registries (models, hooks, transforms, metrics, visualisation backends).

Children of mmengine's root registries, so mmdet and mmseg configs (default scopes ``mmdet`` /
``mmseg``) find our modules with a scoped type, after importing this package::

    custom_imports = dict(imports=['ravlt.mm'], allow_failed_imports=False)
    model = dict(backbone=dict(type='ravlt.RAVLTBackbone', arch='ravlt_s'))
    custom_hooks = [dict(type='ravlt.WandbDetectionImagesHook')]
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import Registry

MODELS = Registry("model", parent=MMENGINE_MODELS, scope="ravlt", locations=["ravlt.mm"])
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, scope="ravlt", locations=["ravlt.mm"])
TRANSFORMS = Registry("transform", parent=MMENGINE_TRANSFORMS, scope="ravlt", locations=["ravlt.mm"])
METRICS = Registry("metric", parent=MMENGINE_METRICS, scope="ravlt", locations=["ravlt.mm"])
VISBACKENDS = Registry("vis_backend", parent=MMENGINE_VISBACKENDS, scope="ravlt", locations=["ravlt.mm"])
