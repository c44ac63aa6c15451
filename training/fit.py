"""Two-phase training of one ensemble member, each run in its own folder.

Phase 1 trains the head on cached frozen-backbone features (original + horizontal flip); phase 2 fine-tunes the
top blocks (or all, ``top_blocks=-1``) with augmentation, class weights, Adam, BCE or focal loss,
ReduceLROnPlateau (or a cosine schedule), early stopping and best-checkpoint saving. Every epoch writes
``last.weights.h5`` and ``state.json`` so ``--resume`` continues an interrupted run. Uses only ``keras`` APIs:
the same code runs on the TensorFlow backend (CPU) and on the JAX or torch backends (GPU, mixed precision).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from inference.preprocessing import ImageSpec, MetadataSpec
from training import data as data_mod
from training.backbones import backbone_info
from training.evaluate import roc_auc

log = logging.getLogger("training")


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
    workers: int = 2

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
        if not 1 <= self.cache_variants <= len(_VARIANTS):
            raise ValueError(f"--cache-variants must be between 1 and {len(_VARIANTS)}")
        if self.colour not in ("none", "shades_of_gray"):
            raise ValueError(f"--colour must be none or shades_of_gray, not {self.colour!r}")
        if self.mixup < 0:
            raise ValueError("--mixup must be 0 (off) or a positive Beta alpha such as 0.2")
        if self.lr_schedule not in ("plateau", "cosine"):
            raise ValueError(f"--lr-schedule must be plateau or cosine, not {self.lr_schedule!r}")
        if self.average_epochs < 1:
            raise ValueError("--average-epochs must be at least 1 (1: keep the best epoch only)")

    def image_spec(self) -> ImageSpec:
        info = backbone_info(self.backbone)
        spec = ImageSpec(self.image_size or info.native_size, self.resize, info.normalisation, self.colour)
        spec.validate()
        return spec


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(run_dir: Path) -> None:
    """Log to ``run_dir/log.txt`` and stderr; a new run replaces the previous run's file handler."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(run_dir / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.addHandler(_StderrHandler())
    log.setLevel(logging.INFO)
    log.propagate = False


def gpu_available() -> bool:
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.devices()[0].platform == "gpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def _mixup(inputs: tuple, labels: np.ndarray, weights, rng: np.random.Generator, alpha: float):
    """Mix a batch with a shuffled copy of itself: x = lam * x + (1 - lam) * x[perm], the same for labels
    (one-hot rows or binary floats) and class weights; lam ~ Beta(alpha, alpha), one per batch."""
    lam = float(rng.beta(alpha, alpha))
    perm = rng.permutation(len(labels))

    def mix(a: np.ndarray) -> np.ndarray:
        return (lam * a + (1.0 - lam) * a[perm]).astype(a.dtype)

    mixed_weights = None if weights is None else mix(weights)
    return tuple(mix(x) for x in inputs), mix(labels), mixed_weights


class _Batches:
    """Factory for a keras.utils.PyDataset over cached uint8 pixels (normalised per batch)."""

    @staticmethod
    def make(
        pixels: np.ndarray,
        metadata: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray | None,
        spec: ImageSpec,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        workers: int = 1,
        mixup: float = 0.0,
        metadata_dropout: float = 0.0,
    ):
        import keras

        class Batches(keras.utils.PyDataset):
            def __init__(self):
                super().__init__(workers=workers, use_multiprocessing=False)
                self.rng = np.random.default_rng(seed)
                self.order = np.arange(len(pixels))
                self.epoch = -1
                self.on_epoch_end()

            def __len__(self) -> int:
                return data_mod.batches(len(pixels), batch_size)

            def __getitem__(self, index: int):
                rows = np.sort(self.order[index * batch_size : (index + 1) * batch_size])
                meta = metadata[rows]
                if metadata_dropout > 0 and shuffle:
                    rng = np.random.default_rng((seed, self.epoch, index, 1))
                    meta = data_mod.drop_metadata(meta, metadata_dropout, rng)
                x = (data_mod.normalised(pixels[rows], spec), meta)
                y, w = labels[rows], None if weights is None else weights[rows]
                if mixup > 0 and shuffle:
                    x, y, w = _mixup(x, y, w, np.random.default_rng((seed, self.epoch, index)), mixup)
                return (x, y) if w is None else (x, y, w)

            def on_epoch_end(self) -> None:
                self.epoch += 1
                if shuffle:
                    self.rng.shuffle(self.order)

        return Batches()


def _loss(config: FitConfig, n_outputs: int, *, soft: bool = False):
    """``soft``: labels are (mixed) one-hot rows instead of class indices."""
    import keras

    if n_outputs > 1:
        return (
            keras.losses.CategoricalCrossentropy() if soft else keras.losses.SparseCategoricalCrossentropy()
        )
    if config.loss == "focal":
        return keras.losses.BinaryFocalCrossentropy(gamma=2.0)
    return keras.losses.BinaryCrossentropy()


def _metrics(config: FitConfig, n_outputs: int, *, soft: bool = False) -> list:
    import keras

    accuracy = keras.metrics.CategoricalAccuracy if soft else keras.metrics.SparseCategoricalAccuracy
    if config.positive_classes:
        return [_positive_auc(config.positive_classes, n_outputs), accuracy(name="accuracy")]
    if n_outputs > 1:
        return [accuracy(name="accuracy")]
    return [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")]


def _positive_auc(positive_classes: tuple[int, ...], n_classes: int):
    """ROC AUC of the summed positive-class probability against "the true class is positive"."""
    import keras
    from keras import ops

    mask = np.zeros(n_classes, np.float32)
    mask[list(positive_classes)] = 1.0

    class PositiveAUC(keras.metrics.AUC):
        def update_state(self, y_true, y_pred, sample_weight=None):
            positive = ops.convert_to_tensor(mask)  # a backend tensor: torch refuses tensor * ndarray
            if len(y_true.shape) == 2 and y_true.shape[-1] == n_classes:  # (mixed) one-hot rows
                truth = ops.sum(ops.cast(y_true, "float32") * positive, axis=-1)
            else:
                classes = ops.cast(ops.reshape(y_true, (-1,)), "int32")
                truth = ops.take(positive, classes)
            score = ops.sum(ops.cast(y_pred, "float32") * positive, axis=-1)
            return super().update_state(truth, score, sample_weight)

    return PositiveAUC(name="auc")


def _monitor(config: FitConfig, n_outputs: int) -> tuple[str, str]:
    return ("val_auc", "max") if n_outputs == 1 or config.positive_classes else ("val_loss", "min")


def _callbacks(
    config: FitConfig, run_dir: Path, phase: str, n_outputs: int, started: float, checkpoint_model
) -> list:
    import keras

    monitor, mode = _monitor(config, n_outputs)

    class EpochState(keras.callbacks.Callback):
        """Writes last.weights.h5 + state.json after each epoch (resume), stops at the time budget."""

        def on_epoch_end(self, epoch, logs=None):
            checkpoint_model.save_weights(str(run_dir / f"{phase}_last.weights.h5"))
            if phase == "finetune" and config.average_epochs > 1:
                checkpoint_model.save_weights(str(run_dir / _epoch_weights(epoch + 1)))
            state = _read_state(run_dir)
            state.update({"phase": phase, f"{phase}_epoch": epoch + 1})
            (run_dir / "state.json").write_text(json.dumps(state))
            if config.max_minutes and (time.monotonic() - started) / 60 > config.max_minutes:
                log.info("time budget of %.1f min reached, stopping %s", config.max_minutes, phase)
                self.model.stop_training = True

    class BestCheckpoint(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best = _read_state(run_dir).get(f"{phase}_best", -np.inf if mode == "max" else np.inf)

        def on_epoch_end(self, epoch, logs=None):
            value = float((logs or {}).get(monitor, np.nan))
            better = value > self.best if mode == "max" else value < self.best
            if better:
                self.best = value
                checkpoint_model.save_weights(str(run_dir / f"{phase}_best.weights.h5"))
                state = _read_state(run_dir)
                state[f"{phase}_best"] = value
                (run_dir / "state.json").write_text(json.dumps(state))
                log.info("%s epoch %d: %s improved to %.4f", phase, epoch + 1, monitor, value)

    if phase == "finetune" and config.lr_schedule == "cosine":
        # Keras passes the absolute epoch index, so a resumed run continues on the same curve.
        schedule = keras.callbacks.LearningRateScheduler(
            lambda epoch: cosine_lr(config.finetune_lr, epoch, config.finetune_epochs)
        )
    else:
        schedule = keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, factor=0.5, patience=1, min_lr=1e-6
        )
    return [
        BestCheckpoint(),
        EpochState(),
        schedule,
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=config.patience),
        keras.callbacks.CSVLogger(str(run_dir / f"history_{phase}.csv"), append=True),
    ]


def cosine_lr(base: float, epoch: int, epochs: int) -> float:
    """Half-cosine decay from ``base`` at epoch 0 to ``base / 100`` at the last epoch."""
    floor = base / 100
    progress = epoch / max(epochs - 1, 1)
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _epoch_weights(epoch: int) -> str:
    return f"finetune_epoch{epoch:03d}.weights.h5"


def _average_epochs(config: FitConfig, run_dir: Path, model, score) -> dict:
    """Average the weights of the ``average_epochs`` best fine-tuning epochs (with ``train_batchnorm`` the
    BatchNorm moving statistics are averaged too, an approximation); keep the average in
    ``finetune_best.weights.h5`` when ``score(model)`` (validation AUC; multiclass: mean log-likelihood) rates it
    above the best epoch."""
    import csv

    monitor, mode = _monitor(config, config.head_outputs)
    history = run_dir / "history_finetune.csv"
    rows = []
    if history.is_file():
        with history.open() as f:
            rows = list(csv.DictReader(f))
    ranked = sorted(
        (
            (float(row[monitor]), int(row["epoch"]) + 1)
            for row in rows
            if row.get(monitor) not in (None, "", "nan")
            and (run_dir / _epoch_weights(int(row["epoch"]) + 1)).is_file()
        ),
        reverse=mode == "max",
    )
    chosen = sorted(epoch for _, epoch in ranked[: config.average_epochs])
    if len(chosen) < 2:
        return {"averaged_epochs": chosen, "kept": "best epoch"}
    model.load_weights(str(run_dir / "finetune_best.weights.h5"))
    best_score = score(model)
    total = None
    for epoch in chosen:
        model.load_weights(str(run_dir / _epoch_weights(epoch)))
        values = [np.asarray(v, np.float64) for v in model.get_weights()]
        total = values if total is None else [t + v for t, v in zip(total, values, strict=True)]
    originals = model.get_weights()
    model.set_weights([(t / len(chosen)).astype(o.dtype) for t, o in zip(total, originals, strict=True)])
    average_score = score(model)
    kept = "average" if average_score > best_score else "best epoch"
    if kept == "average":
        model.save_weights(str(run_dir / "finetune_best.weights.h5"))
    log.info(
        "weight average of epochs %s: validation AUC %.4f against %.4f for the best epoch; kept the %s",
        chosen,
        average_score,
        best_score,
        kept,
    )
    return {
        "averaged_epochs": chosen,
        "average_auc": round(average_score, 5),
        "best_epoch_auc": round(best_score, 5),
        "kept": kept,
    }


def _read_state(run_dir: Path) -> dict:
    path = run_dir / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _features(backbone, pixels: np.ndarray, spec: ImageSpec, batch_size: int, *, flip: bool) -> np.ndarray:
    from tqdm import tqdm

    out = []
    for start in tqdm(range(0, len(pixels), batch_size), desc="features", unit="batch", leave=False):
        batch = data_mod.normalised(pixels[start : start + batch_size], spec)
        if flip:
            batch = batch[:, :, ::-1, :]
        out.append(np.asarray(backbone.predict_on_batch(batch), dtype=np.float32))
    return np.concatenate(out) if out else np.zeros((0, int(backbone.output.shape[-1])), np.float32)


def _cached_split(dual, config: FitConfig):
    """(bottom, top) when the top blocks can be trained on cached activations, else None."""
    from training.backbones import lite_block_boundaries, split_lite

    if config.finetune_mode != "cached" or config.top_blocks < 1:
        return None
    starts = lite_block_boundaries(dual.backbone)
    if not starts or config.top_blocks >= len(starts):
        return None
    return split_lite(dual.backbone, len(starts) - config.top_blocks)


def _transpose(b: np.ndarray) -> np.ndarray:
    return b.transpose(0, 2, 1, 3)


# The dihedral group of the square (dermoscopy has no "up"): identity, flips, 180 degrees, then the
# transposed versions (90- and 270-degree turns and the two diagonal mirrors).
_VARIANTS = (
    lambda b: b,
    lambda b: b[:, :, ::-1, :],
    lambda b: b[:, ::-1, :, :],
    lambda b: b[:, ::-1, ::-1, :],
    lambda b: _transpose(b),
    lambda b: _transpose(b)[:, :, ::-1, :],
    lambda b: _transpose(b)[:, ::-1, :, :],
    lambda b: _transpose(b)[:, ::-1, ::-1, :],
)


def _activation_cache(
    cached, train_px: np.ndarray, val_px: np.ndarray, spec: ImageSpec, config: FitConfig
) -> dict:
    """Frozen-bottom activations, fp16: train (variants, N, h, w, c) under flips (and, with ``cache_augment``,
    the random augmentations for every variant but the first), validation (N, h, w, c) as they are."""
    from tqdm import tqdm

    augment = None
    if config.cache_augment:
        from training.model import augmentation

        augment = augmentation(backbone_info(config.backbone).normalisation, seed=config.seed)
    bottom = cached[0]
    shape = tuple(int(d) for d in bottom.output.shape[1:])
    n_variants = max(1, min(config.cache_variants, len(_VARIANTS)))
    train = np.zeros((n_variants, len(train_px), *shape), np.float16)
    val = np.zeros((len(val_px), *shape), np.float16)
    batch = config.head_batch
    jobs = [(v, train_px, train[v]) for v in range(n_variants)] + [(0, val_px, val)]
    with tqdm(total=sum(len(j[1]) for j in jobs), desc="activation cache", unit="img", mininterval=10) as bar:
        for variant, pixels, target in jobs:
            for start in range(0, len(pixels), batch):
                x = _VARIANTS[variant](data_mod.normalised(pixels[start : start + batch], spec))
                if augment is not None and variant > 0:  # validation is always variant 0, as it is
                    x = np.asarray(augment(np.ascontiguousarray(x), training=True), dtype=np.float32)
                target[start : start + batch] = np.asarray(bottom.predict_on_batch(np.ascontiguousarray(x)))
                bar.update(len(x))
    log.info(
        "activation cache: train %s, validation %s (%.0f MB)",
        train.shape,
        val.shape,
        (train.nbytes + val.nbytes) / 1e6,
    )
    return {"train": train, "val": val}


def _top_features(top, activations: np.ndarray, batch: int) -> np.ndarray:
    out = [
        np.asarray(top.predict_on_batch(activations[i : i + batch].astype(np.float32)), np.float32)
        for i in range(0, len(activations), batch)
    ]
    return np.concatenate(out)


class _CachedBatches:
    @staticmethod
    def make(
        cache: np.ndarray,
        metadata: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray | None,
        batch_size: int,
        *,
        seed: int,
        mixup: float = 0.0,
        metadata_dropout: float = 0.0,
    ):
        import keras

        n_variants, n = cache.shape[0], cache.shape[1]

        class Batches(keras.utils.PyDataset):
            def __init__(self):
                super().__init__()
                self.rng = np.random.default_rng(seed)
                self.order = np.arange(n)
                self.variant = np.zeros(n, np.int64)
                self.shuffle = weights is not None
                self.on_epoch_end()

            def __len__(self) -> int:
                return data_mod.batches(n, batch_size)

            def __getitem__(self, index: int):
                rows = np.sort(self.order[index * batch_size : (index + 1) * batch_size])
                meta = metadata[rows]
                if metadata_dropout > 0 and self.shuffle:
                    meta = data_mod.drop_metadata(meta, metadata_dropout, self.rng)
                x = (cache[self.variant[rows], rows].astype(np.float32), meta)
                y, w = labels[rows], None if weights is None else weights[rows]
                if mixup > 0 and self.shuffle:
                    x, y, w = _mixup(x, y, w, self.rng, mixup)
                return (x, y) if w is None else (x, y, w)

            def on_epoch_end(self) -> None:
                if self.shuffle:
                    self.rng.shuffle(self.order)
                    self.variant = self.rng.integers(0, n_variants, n)

        return Batches()


def fit(config: FitConfig, *, resume: bool = False) -> dict:
    """Train one member; returns a summary (run folder, best validation metric, timings)."""
    import keras

    config.validate()
    run_dir = Path(config.run_dir)
    if run_dir.exists() and any(run_dir.iterdir()) and not resume and (run_dir / "config.json").exists():
        raise FileExistsError(f"{run_dir} already holds a run; use --resume or another --run-dir")
    setup_logging(run_dir)
    if resume and (run_dir / "config.json").exists():
        config = FitConfig.from_dict(
            {**json.loads((run_dir / "config.json").read_text()), "max_minutes": config.max_minutes}
        )
    (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    started = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    use_gpu = gpu_available()
    if config.mixed_precision == "on" or (config.mixed_precision == "auto" and use_gpu):
        keras.mixed_precision.set_global_policy(
            "mixed_bfloat16" if keras.backend.backend() == "jax" else "mixed_float16"
        )
    log.info(
        "backend %s, gpu %s, policy %s",
        keras.backend.backend(),
        use_gpu,
        keras.mixed_precision.global_policy().name,
    )

    load_task = "multiclass" if config.head_outputs > 1 else "binary"  # labels = diagnosis indices
    dataset = data_mod.load_dataset(config.data, task=load_task, strict=config.strict)
    if config.limit:
        dataset = dataset.subset(range(min(config.limit, len(dataset.records))))
    (run_dir / "bad_rows.json").write_text(json.dumps(dataset.bad_rows, indent=1))
    log.info("dataset %s; %d bad rows skipped", dataset.summary(), len(dataset.bad_rows))
    split_path = run_dir / "split.json"
    if split_path.exists():
        split = data_mod.Split.load(split_path)
    elif config.split:
        split = data_mod.Split.load(config.split)
    else:
        split = data_mod.make_split(
            dataset, k=config.k, fold=config.fold, seed=config.seed, dedup=config.dedup
        )
    if config.limit:  # smoke runs on the first rows only: keep the saved split's assignment for those
        present = {r.image_id for r in dataset.records}
        split.train = [i for i in split.train if i in present]
        split.val = [i for i in split.val if i in present]
    split.save(split_path)
    train_set, val_set = split.apply(dataset)
    log.info(
        "split: %d train, %d validation (fold %d of %d)",
        len(train_set.records),
        len(val_set.records),
        split.fold,
        split.k,
    )

    spec = config.image_spec()
    meta_spec = MetadataSpec()
    n_outputs = config.head_outputs
    from training.model import build_dual_model

    dual = build_dual_model(
        config.backbone,
        image_size=spec.size,
        metadata_size=meta_spec.size,
        weights=config.weights,
        n_outputs=n_outputs,
        dropout=config.dropout,
        seed=config.seed,
        positive_classes=config.positive_classes,
    )
    t0 = time.monotonic()
    train_px, val_px = data_mod.image_cache(train_set, spec), data_mod.image_cache(val_set, spec)
    train_meta, val_meta = (
        data_mod.metadata_matrix(train_set, meta_spec),
        data_mod.metadata_matrix(val_set, meta_spec),
    )
    y_train = train_set.labels.astype(np.float32 if n_outputs == 1 else np.int64)
    y_val = val_set.labels.astype(np.float32 if n_outputs == 1 else np.int64)
    if config.positive_classes:  # balance malignant against benign, as the binary members do
        malignant = np.array([r.malignant for r in train_set.records], dtype=np.int64)
        cw = data_mod.class_weights(malignant, 2)
        w_train = np.array([cw[int(m)] for m in malignant], dtype=np.float32)
    else:
        cw = data_mod.class_weights(train_set.labels, max(2, n_outputs))
        w_train = np.array([cw[int(label)] for label in train_set.labels], dtype=np.float32)
    timings = {"decode_s": round(time.monotonic() - t0, 1)}
    state = _read_state(run_dir)

    # Phase 1: head on cached frozen features.
    monitor, mode = _monitor(config, n_outputs)
    cached = _cached_split(dual, config)
    cache = None
    if state.get("phase") in (None, "head") and not state.get("head_done"):
        t0 = time.monotonic()
        dual.backbone.trainable = False
        if cached:
            cache = _activation_cache(cached, train_px, val_px, spec, config)
            f_train = np.concatenate(
                [_top_features(cached[1], cache["train"][v], config.head_batch) for v in (0, 1)]
            )
            f_val = _top_features(cached[1], cache["val"], config.head_batch)
            n_forward = len(train_px) * cache["train"].shape[0] + len(val_px)
        else:
            f_train = np.concatenate(
                [
                    _features(dual.backbone, train_px, spec, config.head_batch, flip=False),
                    _features(dual.backbone, train_px, spec, config.head_batch, flip=True),
                ]
            )
            f_val = _features(dual.backbone, val_px, spec, config.head_batch, flip=False)
            n_forward = 2 * len(train_px) + len(val_px)
        timings["feature_images_per_s"] = round(n_forward / (time.monotonic() - t0), 1)
        t1 = time.monotonic()
        dual.head.compile(
            optimizer=keras.optimizers.Adam(config.head_lr),
            loss=_loss(config, n_outputs),
            metrics=_metrics(config, n_outputs),
        )
        if (run_dir / "head_last.weights.h5").exists():
            dual.head.load_weights(str(run_dir / "head_last.weights.h5"))
        head_rng = np.random.default_rng((config.seed, 2))
        head_meta = [data_mod.drop_metadata(train_meta, config.metadata_dropout, head_rng) for _ in range(2)]
        dual.head.fit(
            [f_train, np.concatenate(head_meta)],
            np.concatenate([y_train, y_train]),
            sample_weight=np.concatenate([w_train, w_train]),
            batch_size=config.head_batch,
            epochs=config.head_epochs,
            initial_epoch=state.get("head_epoch", 0),
            validation_data=([f_val, val_meta], y_val),
            verbose=2,
            shuffle=True,
            callbacks=_callbacks(config, run_dir, "head", n_outputs, started, dual.head),
        )
        dual.head.load_weights(str(run_dir / "head_best.weights.h5"))
        timings["head_s"] = round(time.monotonic() - t1, 1)
        timings["head_images_per_s"] = round(len(f_train) * config.head_epochs / max(1e-6, timings["head_s"]))
        state = _read_state(run_dir)
        state.update({"phase": "finetune", "head_done": True})
        (run_dir / "state.json").write_text(json.dumps(state))
        dual.model.save_weights(str(run_dir / "finetune_best.weights.h5"))  # fine-tuning must beat this
        state["finetune_best"] = float(state.get("head_best", -np.inf))
        (run_dir / "state.json").write_text(json.dumps(state))
    elif (run_dir / "finetune_last.weights.h5").exists():
        dual.model.load_weights(str(run_dir / "finetune_last.weights.h5"))
    else:
        dual.model.load_weights(str(run_dir / "finetune_best.weights.h5"))

    # Phase 2: fine-tune the top blocks with augmentation.
    state = _read_state(run_dir)
    if config.finetune_epochs > 0 and not state.get("finetune_done"):
        from training.backbones import trainable_top

        trainable_top(dual.backbone, config.top_blocks, batchnorm=config.train_batchnorm)
        soft = config.mixup > 0 and n_outputs > 1  # mixed labels need one-hot rows
        y_fit, y_check = (
            (np.eye(n_outputs, dtype=np.float32)[y] for y in (y_train, y_val)) if soft else (y_train, y_val)
        )
        if cached:
            if cache is None:
                cache = _activation_cache(cached, train_px, val_px, spec, config)
            activations = keras.Input(shape=tuple(cached[1].input.shape[1:]), name="activations")
            metadata_in = keras.Input(shape=(meta_spec.size,), name="metadata")
            trainer = keras.Model(
                [activations, metadata_in], dual.head([cached[1](activations), metadata_in])
            )
            train_batches = _CachedBatches.make(
                cache["train"],
                train_meta,
                y_fit,
                w_train,
                config.batch_size,
                seed=config.seed,
                mixup=config.mixup,
                metadata_dropout=config.metadata_dropout,
            )
            val_batches = _CachedBatches.make(cache["val"][None], val_meta, y_check, None, 64, seed=0)
        else:
            trainer = dual.train_model
            train_batches = _Batches.make(
                train_px,
                train_meta,
                y_fit,
                w_train,
                spec,
                config.batch_size,
                shuffle=True,
                seed=config.seed,
                workers=config.workers,
                mixup=config.mixup,
                metadata_dropout=config.metadata_dropout,
            )
            val_batches = _Batches.make(
                val_px,
                val_meta,
                y_check,
                None,
                spec,
                max(config.batch_size, 32),
                shuffle=False,
                seed=0,
                workers=config.workers,
            )
        trainer.compile(
            optimizer=keras.optimizers.Adam(config.finetune_lr),
            loss=_loss(config, n_outputs, soft=soft),
            metrics=_metrics(config, n_outputs, soft=soft),
        )
        t1 = time.monotonic()
        initial = state.get("finetune_epoch", 0)
        history = trainer.fit(
            train_batches,
            epochs=config.finetune_epochs,
            initial_epoch=initial,
            steps_per_epoch=config.steps_per_epoch,
            validation_data=val_batches,
            verbose=2,
            callbacks=_callbacks(config, run_dir, "finetune", n_outputs, started, dual.model),
        )
        epochs_run = len(history.history.get("loss", []))
        seconds = time.monotonic() - t1
        steps = config.steps_per_epoch or len(train_batches)
        timings["finetune_s"] = round(seconds, 1)
        timings["finetune_images_per_s"] = round(
            epochs_run * steps * config.batch_size / max(seconds, 1e-6), 1
        )
        state = _read_state(run_dir)
        state["finetune_done"] = True
        (run_dir / "state.json").write_text(json.dumps(state))
    state = _read_state(run_dir)
    if config.average_epochs > 1 and state.get("finetune_done") and "averaging" not in state:
        val_x = [data_mod.normalised(val_px, spec), val_meta]

        def score(model) -> float:
            predicted = np.asarray(model.predict(val_x, batch_size=64, verbose=0), np.float64)
            if predicted.shape[1] == 1:
                return float(roc_auc(np.array([r.malignant for r in val_set.records]), predicted[:, 0]))
            picked = predicted[np.arange(len(y_val)), y_val.astype(np.int64)]
            return float(np.mean(np.log(np.clip(picked, 1e-7, 1.0))))  # multiclass: minus the log loss

        state["averaging"] = _average_epochs(config, run_dir, dual.model, score)
        (run_dir / "state.json").write_text(json.dumps(state))
    dual.model.load_weights(str(run_dir / "finetune_best.weights.h5"))
    dual.model.save_weights(str(run_dir / "model.weights.h5"))
    probabilities = np.asarray(
        dual.model.predict([data_mod.normalised(val_px, spec), val_meta], batch_size=64, verbose=0),
        dtype=np.float32,
    )
    np.savez(
        run_dir / "val_predictions.npz",
        image_id=np.array([r.image_id for r in val_set.records]),
        probability=probabilities,
        label=np.array([r.malignant for r in val_set.records]) if config.positive_classes else y_val,
    )
    state = _read_state(run_dir)
    summary = {
        "run_dir": str(run_dir),
        "backbone": config.backbone,
        "image_spec": spec.to_dict(),
        "n_train": len(train_set.records),
        "n_val": len(val_set.records),
        "best_head": state.get("head_best"),
        "best_finetune": state.get("finetune_best"),
        "monitor": monitor,
        "averaging": state.get("averaging"),
        "timings": timings,
        "total_s": round(time.monotonic() - started, 1),
        "backend": keras.backend.backend(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("done: %s", summary)
    return summary


def member_model(config: FitConfig):
    """The inference graph (no augmentation, no pretrained weights loaded) of the member ``config`` describes."""
    from training.model import build_dual_model

    return build_dual_model(
        config.backbone,
        image_size=config.image_spec().size,
        metadata_size=MetadataSpec().size,
        weights=None,
        n_outputs=config.head_outputs,
        dropout=config.dropout,
        augment=False,
        positive_classes=config.positive_classes,
    ).model


def load_member(run_dir: str | Path, *, weights_file: str = "model.weights.h5"):
    """Rebuild a trained member's inference model (no augmentation) from its run folder."""
    run_dir = Path(run_dir)
    config = FitConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    model = member_model(config)
    model.load_weights(str(run_dir / weights_file))
    return model, config, config.image_spec()
