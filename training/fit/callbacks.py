"""Logging, losses, metrics, the per-epoch callbacks (checkpoints, state, time budget, learning-rate schedules) and
epoch averaging of a training run."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

from training.fit.config import FitConfig

log = logging.getLogger("training")


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
        """Writes last.weights.h5 + state.json (with each epoch's seconds, validation included) after each
        epoch (resume), stops at the time budget."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            seconds = round(time.monotonic() - getattr(self, "epoch_started", time.monotonic()), 2)
            checkpoint_model.save_weights(str(run_dir / f"{phase}_last.weights.h5"))
            if phase == "finetune" and config.average_epochs > 1:
                checkpoint_model.save_weights(str(run_dir / _epoch_weights(epoch + 1)))
            state = _read_state(run_dir)
            state.update({"phase": phase, f"{phase}_epoch": epoch + 1})
            state[f"{phase}_epoch_seconds"] = [*state.get(f"{phase}_epoch_seconds", []), seconds]
            log.info("%s epoch %d: %.1f s", phase, epoch + 1, seconds)
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
