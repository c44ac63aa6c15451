"""The accelerator path end to end on this CPU: image cache -> ``scripts/device_train.sh train`` (``python -m
training.device train`` with ``KERAS_BACKEND=torch``: whole backbone on pixels, the carried fp16 ImageNet
weights) -> fp16 weights -> ``training.ensemble import`` into a TensorFlow-backend run folder -> the same scores
-> ONNX export with parity.

Needs torch (not a project dependency: run with a torch install on PYTHONPATH, e.g. the CPU wheel in its own
folder, ``pip install --target /work/torchsite torch==2.13.0``) and TensorFlow; skipped without either."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.training.test_data_metrics import write_dataset

pytestmark = [pytest.mark.training, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
if importlib.util.find_spec("torch") is None:
    pytest.skip("torch is not installed (the device path's backend)", allow_module_level=True)
tf = pytest.importorskip("tensorflow")
tf.get_logger().setLevel("ERROR")
ROOT = Path(__file__).resolve().parents[2]


def test_a_member_trained_on_the_torch_backend_comes_back_with_the_same_scores_and_exports(tmp_path):
    from inference.preprocessing import MetadataSpec
    from training.__main__ import main
    from training.backbones import save_lite_state
    from training.cache import ImageCache
    from training.data import metadata_matrix, normalised
    from training.ensemble import main as ensemble_main
    from training.fit import load_member

    csv_path = write_dataset(tmp_path / "data", n=32, size=40)
    cache = tmp_path / "cache"
    assert (
        main(["cache-images", "--data", str(csv_path), "--image-size", "32", "--k", "4", "--out", str(cache)])
        == 0
    )
    weights = save_lite_state("lite0", tmp_path / "lite0.npz")  # what travels in .device/weights
    out = tmp_path / "out"
    # the script the device call runs: it would install the carried wheels where keras is missing
    command = ["bash", "scripts/device_train.sh", "train", "--cache", str(cache), "--member", "lite0a"]
    command += ["--runs", str(tmp_path / "runs"), "--weights", str(weights)]
    command += ["--minutes", "30", "--head-epochs", "1", "--max-epochs", "2", "--batch-size", "8"]
    command += ["--steps-per-epoch", "2", "--workers", "1", "--lr", "1e-3"]
    env = {
        **os.environ,
        "OUT": str(out),  # the device tool sets it there
        "PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path[1:]]),
        "OMP_NUM_THREADS": "2",
    }
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]

    record = json.loads((out / "device.json").read_text())
    assert record["environment"]["keras_backend"] == "torch" and record["environment"]["keras"]
    config = record["config"]
    assert (config["top_blocks"], config["finetune_mode"], config["lr_schedule"]) == (-1, "pixels", "cosine")
    assert config["cache"] == str(cache) and config["supervision"] == "diagnosis"
    assert config["epochs_from_budget"] and config["finetune_epochs"] == 2  # the cap: 30 minutes hold more
    assert record["finetune_epochs_run"] == 2 and len(record["finetune_epoch_seconds"]) == 2
    assert sorted(record["files"]) == ["lite0a.json", "lite0a.npz"]
    assert (out / "lite0a.log").is_file() and (out / "lite0a.val_predictions.npz").is_file()
    assert "finetune epoch 2" in (out / "train.log").read_text()  # the script's copy of the output

    # here: the TensorFlow backend rebuilds the run folder from the fp16 weights
    run = tmp_path / "imported"
    files = [str(out / "lite0a.npz"), str(out / "lite0a.json")]
    assert ensemble_main(["import", *files, "--run-dir", str(run), "--data", str(csv_path)]) == 0
    imported = json.loads((run / "config.json").read_text())
    assert imported["backbone"] == "efficientnet_lite0" and imported["image_size"] == 32
    split = json.loads((run / "split.json").read_text())
    assert split["val"] == ImageCache(cache).split().val  # the cache's split came back with the member

    # ... and scores the validation images as the torch backend did (fp16 weights: a few 1e-3 at most)
    model, _, spec = load_member(run)
    store = ImageCache(cache)
    _, val = store.split().apply(store.dataset())
    x = [normalised(store.pixels(val, spec), spec), metadata_matrix(val, MetadataSpec())]
    here = model.predict(x, verbose=0)
    with np.load(out / "lite0a.val_predictions.npz") as there:
        assert list(there["image_id"]) == [r.image_id for r in val.records]
        assert np.abs(here - there["probability"]).max() < 5e-3

    # the ONNX export checks its own parity against Keras on the validation images of the original CSV
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "lite0a.onnx")]) == 0
    parity = json.loads((tmp_path / "lite0a.parity.json").read_text())
    assert parity["parity_max_abs_diff"] <= 1e-4
