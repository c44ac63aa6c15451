"""Two-phase training of one ensemble member (``python -m training fit``), in four modules: ``config`` (every
option and its default), ``batches`` (pixel, feature and activation batches, mixup, metadata dropout),
``callbacks`` (logging, losses, metrics, checkpoints, schedules, epoch averaging) and ``run`` (``fit`` itself and
loading a trained member). Nothing here imports Django."""

from training.fit.batches import _VARIANTS
from training.fit.callbacks import cosine_lr, setup_logging
from training.fit.config import FitConfig
from training.fit.run import fit, gpu_available, load_member, member_model

__all__ = [
    "_VARIANTS",
    "FitConfig",
    "cosine_lr",
    "fit",
    "gpu_available",
    "load_member",
    "member_model",
    "setup_logging",
]
