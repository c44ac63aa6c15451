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
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from inference.preprocessing import MetadataSpec
from training import data as data_mod
from training.evaluate import roc_auc
from training.fit.batches import (
    _activation_cache,
    _Batches,
    _cached_split,
    _CachedBatches,
    _features,
    _top_features,
    activation_cache_key,
)
from training.fit.callbacks import (
    _average_epochs,
    _callbacks,
    _loss,
    _metrics,
    _monitor,
    _read_state,
    setup_logging,
)
from training.fit.config import FitConfig

log = logging.getLogger("training")


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
    policy = precision_policy(config.mixed_precision, use_gpu, keras.backend.backend())
    if policy:
        keras.mixed_precision.set_global_policy(policy)
    log.info(
        "backend %s, gpu %s, policy %s",
        keras.backend.backend(),
        use_gpu,
        keras.mixed_precision.global_policy().name,
    )

    load_task = "multiclass" if config.head_outputs > 1 else "binary"  # labels = diagnosis indices
    image_store = None
    if config.cache:  # images, labels and split from a cache-images folder (a device machine has no CSVs)
        from training.cache import ImageCache

        image_store = ImageCache(config.cache)
        image_store.check_spec(config.image_spec())
        dataset = image_store.dataset(task=load_task)
    else:
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
    elif image_store is not None:
        split = image_store.split()
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
    if image_store is not None:
        train_px = image_store.pixels(train_set, spec, workers=max(4, config.workers))
        val_px = image_store.pixels(val_set, spec, workers=max(4, config.workers))
    else:
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
    cache_key = activation_cache_key(
        config, spec, [r.image_id for r in train_set.records], [r.image_id for r in val_set.records]
    )
    if state.get("phase") in (None, "head") and not state.get("head_done"):
        t0 = time.monotonic()
        dual.backbone.trainable = False
        if cached:
            cache = _activation_cache(cached, train_px, val_px, spec, config, cache_key)
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
                cache = _activation_cache(cached, train_px, val_px, spec, config, cache_key)
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
        epochs_run = _fine_tune(
            trainer,
            train_batches,
            config,
            run_dir,
            started,
            initial=state.get("finetune_epoch", 0),
            steps_per_epoch=config.steps_per_epoch,
            validation_data=val_batches,
            verbose=2,
            callbacks=_callbacks(config, run_dir, "finetune", n_outputs, started, dual.model),
        )
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


def precision_policy(setting: str, use_gpu: bool, backend: str) -> str | None:
    """The Keras dtype policy for ``--mixed-precision`` (None: float32). ``auto`` turns it on with a GPU:
    bfloat16 on JAX, float16 (with loss scaling, which Keras adds) on torch and TensorFlow."""
    if setting in ("float16", "bfloat16"):
        return f"mixed_{setting}"
    if setting == "on" or (setting == "auto" and use_gpu):
        return "mixed_bfloat16" if backend == "jax" else "mixed_float16"
    return None


def _fine_tune(
    trainer, batches, config: FitConfig, run_dir: Path, started: float, *, initial: int, **fit_args
):
    """``trainer.fit`` over the fine-tuning epochs; returns the epochs run. With ``epochs_from_budget`` the first
    two epochs run alone and are timed (the first includes warm-up), and after each ``finetune_epochs`` is set to
    as many epochs as fit in ``max_minutes`` (at most the configured number), saved in config.json so that a
    resumed run keeps the same schedule."""
    epochs_run, cap = 0, config.finetune_epochs
    probes = (0, 1) if config.epochs_from_budget else ()
    for probe in probes:
        if initial != probe or probe >= config.finetune_epochs:
            break
        t0 = time.monotonic()
        history = trainer.fit(batches, epochs=probe + 1, initial_epoch=probe, **fit_args)
        ran = len(history.history.get("loss", []))
        epochs_run += ran
        if not ran or trainer.stop_training:
            return epochs_run
        initial = probe + 1
        config.finetune_epochs = budget_epochs(
            budget_s=config.max_minutes * 60,
            elapsed_s=time.monotonic() - started,
            epoch_s=time.monotonic() - t0,
            done=initial,
            cap=cap,
        )
        (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
        log.info(
            "epoch %d took %.1f s: %d fine-tuning epochs fit in the %.1f min budget",
            initial,
            time.monotonic() - t0,
            config.finetune_epochs,
            config.max_minutes,
        )
    if initial < config.finetune_epochs:
        history = trainer.fit(batches, epochs=config.finetune_epochs, initial_epoch=initial, **fit_args)
        epochs_run += len(history.history.get("loss", []))
    return epochs_run


def budget_epochs(*, budget_s: float, elapsed_s: float, epoch_s: float, done: int, cap: int) -> int:
    """How many fine-tuning epochs in all (``done`` of them finished) fit in what is left of ``budget_s``, keeping
    5 % of the budget for the final prediction and saving; between ``done`` and ``cap``."""
    left = budget_s * 0.95 - elapsed_s
    more = int(left // max(epoch_s, 1e-6)) if left > 0 else 0
    return max(done, min(cap, done + more))


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
