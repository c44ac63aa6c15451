"""The configuration of one training run: every ``fit`` option, with its default (the CLI is generated from it)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from inference.preprocessing import ImageSpec
from training import data as data_mod
from training.backbones import backbone_info

# the dihedral variants of a square image that cached mode can use (training.fit.batches._VARIANTS)
N_VARIANTS = 8


@dataclass
class FitConfig:
    data: str | list[str]  # one CSV, several, or a list file (training.data.data_files)
    run_dir: str
    task: str = "binary"
    # binary task only: "diagnosis" trains the head over the seven HAM10000 diagnoses and serves
    # P(malignant) = P(mel) + P(bcc) + P(akiec); "malignant" trains on the binary label directly.
    supervision: str = "malignant"
    backbone: str = "efficientnet_lite0"
    image_size: int | None = None
    resize: str = "squash"
    colour: str = "none"  # or "shades_of_gray": colour constancy in the shared preprocessing (manifest too)
    weights: str | None = "imagenet"
    k: int = 5
    fold: int = 0
    seed: int = 0
    strict: bool = False
    dedup: bool = True
    split: str | None = None  # reuse a saved split.json (ensembles share one validation set)
    limit: int | None = None  # first N usable rows only (smoke tests)
    head_epochs: int = 15
    head_lr: float = 1e-3
    head_batch: int = 64
    finetune_epochs: int = 6
    finetune_lr: float = 1e-4
    top_blocks: int = 5
    finetune_mode: str = (
        "cached"  # cached: train the top blocks on cached activations (Lite); pixels: full graph
    )
    cache_variants: int = 3  # cached mode: the first N of the 8 dihedral variants (flips, 90-degree turns)
    # cached mode: variants after the first also go through the random augmentations (rotation, zoom,
    # brightness, contrast) before the frozen bottom, so the cached epochs see more than flips
    cache_augment: bool = False
    # phase 2: average the weights of the N fine-tuning epochs with the best validation metric (a "weight
    # soup"; BatchNorm stays frozen, so no statistics need recomputing) and keep the average if it scores
    # higher on validation than the single best epoch; 1 = off
    average_epochs: int = 1
    # phase 2: mixup strength alpha: each training batch is mixed with a shuffled copy of itself by a factor
    # drawn from Beta(alpha, alpha) (cached activations or pixels, metadata, labels and class weights alike);
    # on cached activations this is "manifold mixup" at the split point; 0 = off
    mixup: float = 0.0
    # phase 2: the fine-tuned blocks' BatchNorm layers train too (batch statistics; their moving averages adapt
    # to dermoscopy) instead of keeping ImageNet statistics
    train_batchnorm: bool = False
    # phase 2 learning rate: "plateau" halves it after one epoch without improvement (ReduceLROnPlateau);
    # "cosine" lowers it from finetune_lr to a hundredth of it along half a cosine over finetune_epochs, whatever the
    # validation metric does (noisy epochs, such as pixel mode's freshly augmented ones, do not cut it early)
    lr_schedule: str = "plateau"
    # metadata dropout: each of age, sex and site becomes "unknown" with this probability per image, independently
    # (phase 2: drawn again for every batch; phase 1: once for each of the two cached copies), so that every
    # missingness pattern is seen with every label and source and the image must speak for itself; 0 = off
    metadata_dropout: float = 0.0
    batch_size: int = 16
    loss: str = "bce"  # or "focal"
    dropout: float = 0.3
    patience: int = 3
    steps_per_epoch: int | None = None
    mixed_precision: str = "auto"  # auto: on when a GPU is visible
    max_minutes: float | None = None
    # phase 2: after the first epoch, set finetune_epochs to as many as fit in max_minutes (at most the given
    # finetune_epochs), so a time-boxed run (a device call) finishes its cosine schedule instead of being cut
    epochs_from_budget: bool = False
    workers: int = 2
    # an image cache folder (training.cache, `cache-images`): images, labels and split come from it, not the CSVs
    cache: str | None = None
    # cached mode: a folder that keeps the frozen-bottom activations between runs (members that differ only in
    # seed, dropout or learning rate share them); see training.fit.batches.activation_cache_key
    activation_cache: str | None = None

    @classmethod
    def from_dict(cls, values: dict) -> FitConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @property
    def head_outputs(self) -> int:
        """Columns the head is trained on: 1 (binary label) or one per diagnosis."""
        if self.task == "multiclass" or self.supervision == "diagnosis":
            return len(data_mod.HAM_CLASSES)
        return 1

    @property
    def positive_classes(self) -> tuple[int, ...] | None:
        """Diagnosis-supervised binary members: the class indices summed into P(malignant)."""
        if self.task == "binary" and self.supervision == "diagnosis":
            return tuple(i for i, c in enumerate(data_mod.HAM_CLASSES) if c in data_mod.MALIGNANT_DIAGNOSES)
        return None

    def validate(self) -> None:
        if self.supervision not in ("malignant", "diagnosis"):
            raise ValueError(f"unknown supervision {self.supervision!r} (malignant or diagnosis)")
        if self.supervision == "diagnosis" and self.task != "binary":
            raise ValueError("--supervision diagnosis applies to the binary task only")
        if not 0.0 <= self.metadata_dropout < 1.0:
            raise ValueError(f"--metadata-dropout must be in [0, 1), got {self.metadata_dropout}")
        if not 1 <= self.cache_variants <= N_VARIANTS:
            raise ValueError(f"--cache-variants must be between 1 and {N_VARIANTS}")
        if self.colour not in ("none", "shades_of_gray"):
            raise ValueError(f"--colour must be none or shades_of_gray, not {self.colour!r}")
        if self.mixup < 0:
            raise ValueError("--mixup must be 0 (off) or a positive Beta alpha such as 0.2")
        if self.lr_schedule not in ("plateau", "cosine"):
            raise ValueError(f"--lr-schedule must be plateau or cosine, not {self.lr_schedule!r}")
        if self.mixed_precision not in ("auto", "on", "off", "float16", "bfloat16"):
            raise ValueError(
                f"--mixed-precision must be auto, on, off, float16 or bfloat16, not {self.mixed_precision!r}"
            )
        if self.epochs_from_budget and not self.max_minutes:
            raise ValueError("--epochs-from-budget needs --max-minutes (the budget the epochs must fit in)")
        if self.average_epochs < 1:
            raise ValueError("--average-epochs must be at least 1 (1: keep the best epoch only)")

    def image_spec(self) -> ImageSpec:
        info = backbone_info(self.backbone)
        spec = ImageSpec(self.image_size or info.native_size, self.resize, info.normalisation, self.colour)
        spec.validate()
        return spec
