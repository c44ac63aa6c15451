"""The image cache that carries a split's images to a training machine (``cache-images``, ``training.cache``) and
the device-call plan (``python -m training.device plan``). No TensorFlow, Keras or torch needed."""

import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from inference.preprocessing import ImageSpec
from tests.training.test_data_metrics import write_dataset
from training.__main__ import main
from training.cache import CacheError, ImageCache, decode
from training.data import image_cache, load_dataset, make_split
from training.device import main as device_main


def build(tmp_path, capsys, *extra, name="cache"):
    csv_path = tmp_path / "labels.csv"
    if not csv_path.exists():
        write_dataset(tmp_path, n=40, size=48)
    out = tmp_path / name
    code = main(
        ["cache-images", "--data", str(csv_path), "--image-size", "32", "--k", "4", "--out", str(out), *extra]
    )
    captured = capsys.readouterr()
    return code, out, captured


def test_cache_packs_every_split_image_into_parts_under_the_limit(tmp_path, capsys):
    code, out, captured = build(tmp_path, capsys, "--part-mib", "0.01")
    assert code == 0, captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    index = ImageCache(out).index
    assert summary["images"] == 40 and summary["train"] + summary["val"] == 40
    assert summary["parts"] == len(index["parts"]) > 1
    for part in index["parts"]:
        size = (out / part["file"]).stat().st_size
        assert size == part["bytes"] <= 0.01 * 2**20
    # the images lie back to back in their parts, and each decodes to a 32 px image
    assert sum(e["length"] for e in index["images"]) == sum(p["bytes"] for p in index["parts"])
    first = index["images"][0]
    blob = (out / index["parts"][first["part"]]["file"]).read_bytes()[
        first["offset"] : first["offset"] + first["length"]
    ]
    assert decode(blob).shape == (32, 32, 3)
    # the CSV's bad rows travel with their line numbers
    assert [row["line"] for row in index["bad_rows"]] == [42, 43, 44]


def smooth_images(folder):
    """Replace write_dataset's noise by smooth images (a dark blob on skin tones), as dermoscopy is: lossy
    encoders lose little on them, much on noise."""
    yy, xx = np.mgrid[0:48, 0:56]
    for i, path in enumerate(sorted((folder / "images").glob("IMG_*.jpg"))):
        blob = np.exp(-((xx - 20 - i % 9) ** 2 + (yy - 24) ** 2) / (60.0 + 5 * i))
        skin = np.array([200, 150 - i, 120], np.float32)
        pixels = skin * (1 - 0.7 * blob[..., None]) + xx[..., None] * 0.3
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=95)


def test_cache_round_trips_labels_metadata_split_and_pixels(tmp_path, capsys):
    write_dataset(tmp_path, n=40, size=48)
    smooth_images(tmp_path)
    code, out, captured = build(tmp_path, capsys, "--quality", "100")
    assert code == 0, captured.err
    cache = ImageCache(out)
    original = load_dataset(tmp_path / "labels.csv")
    cached = cache.dataset()

    def fields(record):
        return (record.image_id, record.label, record.malignant, record.diagnosis, record.age, record.sex)

    by_id = {r.image_id: r for r in original.records}
    for record in cached.records:
        source = by_id[record.image_id]
        assert fields(record) == fields(source)
        assert (record.site, record.source, record.line) == (source.site, source.source, source.line)
    assert sorted(r.image_id for r in cached.records) == sorted(by_id)
    # multiclass: labels are the HAM10000 class indices, as load_dataset gives them
    assert [r.label for r in cache.dataset("multiclass").records] == [
        {"mel": 4, "nv": 5}[r.diagnosis] for r in cached.records
    ]
    split = cache.split()
    assert json.loads((out / "split.json").read_text())["val"] == split.val
    train, val = split.apply(cached)
    spec = ImageSpec(32)
    pixels = cache.pixels(val, spec, workers=2)
    reference = image_cache(split.apply(original)[1], spec)
    assert pixels.shape == reference.shape == (len(split.val), 32, 32, 3)
    error = np.abs(pixels.astype(np.int16) - reference).mean()
    assert error < 1.0  # the resize is the shared one; the encoder loses a little (chroma subsampling)
    assert error == pytest.approx(cache.index["encoding_error"]["mean_abs"], abs=1.0)


def test_cache_keeps_lesions_together_and_a_given_split_exactly(tmp_path, capsys):
    write_dataset(tmp_path, n=40, size=48)
    split = make_split(load_dataset(tmp_path / "labels.csv"), k=4, fold=2, seed=7)
    split.save(tmp_path / "given.json")
    code, out, captured = build(tmp_path, capsys, "--split", str(tmp_path / "given.json"), "--format", "webp")
    assert code == 0, captured.err
    cache = ImageCache(out)
    assert cache.split().val == split.val and cache.split().train == split.train
    roles: dict[str, set] = {}
    for entry in cache.index["images"]:
        roles.setdefault(entry["group"], set()).add(entry["split"])
    assert all(len(r) == 1 for r in roles.values())  # write_dataset puts two images in each lesion
    assert max(sum(1 for e in cache.index["images"] if e["group"] == g) for g in roles) == 2


def test_cache_errors_are_clear(tmp_path, capsys):
    code, _, captured = build(tmp_path, capsys, "--part-mib", "64")
    assert code == 2 and "--part-mib must be above 0 and below 64" in captured.err
    with pytest.raises(SystemExit):  # argparse names the choices
        build(tmp_path, capsys, "--format", "gif")
    assert "invalid choice: 'gif'" in capsys.readouterr().err
    code, _, captured = build(tmp_path, capsys, "--quality", "0")
    assert code == 2 and "--quality must be between 1 and 100" in captured.err
    code, out, captured = build(tmp_path, capsys)
    assert code == 0
    code, _, captured = build(tmp_path, capsys)
    assert code == 2 and "is not empty" in captured.err
    (tmp_path / "other.json").write_text(
        json.dumps({"train": ["IMG_000", "NOPE"], "val": ["IMG_001"], "fold": 0, "k": 4, "seed": 0})
    )
    code, _, captured = build(tmp_path, capsys, "--split", str(tmp_path / "other.json"), name="c2")
    assert code == 2 and "names 1 images not in the dataset" in captured.err

    cache = ImageCache(out)
    with pytest.raises(CacheError, match="needs 64 px"):
        cache.check_spec(ImageSpec(64))
    part = out / cache.index["parts"][0]["file"]
    damaged = bytearray(part.read_bytes())
    damaged[10] ^= 0xFF
    part.write_bytes(bytes(damaged))
    with pytest.raises(CacheError, match="damaged"):
        ImageCache(out).pixels(ImageCache(out).dataset(), ImageSpec(32))
    part.unlink()
    with pytest.raises(CacheError, match="part-000.bin"):
        ImageCache(out).check()
    with pytest.raises(CacheError, match="holds no image cache"):
        ImageCache(tmp_path)


def test_plan_splits_the_cache_over_calls_within_the_limit(tmp_path, capsys, monkeypatch):
    code, out, _ = build(tmp_path, capsys, "--part-mib", "0.004")
    assert code == 0
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "README").write_bytes(b"x" * 3000)
    (repo / ".gitignore").write_text("/.whl/\n/.device/\n/cache/\n")
    (repo / ".whl").mkdir()
    (repo / ".whl" / "keras-0-py3-none-any.whl").write_bytes(b"w" * 2000)
    (repo / ".device" / "weights").mkdir(parents=True)
    (repo / ".device" / "weights" / "lite0.npz").write_bytes(b"n" * 4000)
    out.rename(repo / "cache")
    monkeypatch.chdir(repo)
    index = ImageCache(repo / "cache").index

    assert device_main(["plan", "--cache", "cache", "--member", "lite0a", "--call-mib", "0.02"]) == 0
    plan = json.loads(capsys.readouterr().out)
    calls = plan["calls"]
    assert len(calls) > 1
    assert all(call["mib"] <= 0.02 and len(call["carry"]) <= 8 for call in calls)
    carried = [path for call in calls for path in call["carry"]]
    assert sorted(p for p in carried if p.endswith(".bin")) == sorted(
        f"cache/{p['file']}" for p in index["parts"]
    )
    assert len([p for p in carried if p.endswith(".bin")]) == len(index["parts"])  # each part travels once
    assert all("cache/index.json.gz" in call["carry"] for call in calls)  # check there reads it
    assert all("check --cache cache" in call["command"] for call in calls[:-1])
    last = calls[-1]
    assert {".whl", ".device/weights/lite0.npz", "cache/index.json.gz"} <= set(last["carry"])
    assert "train --cache cache --member lite0a" in last["command"] and last["timeout_s"] <= 600

    (repo / "big.onnx").write_bytes(b"o" * 30000)  # an untracked, unignored file travels too
    assert device_main(["plan", "--cache", "cache", "--call-mib", "0.02"]) == 2
    assert "big.onnx" in json.loads(capsys.readouterr().out)["problems"][-1]
    assert device_main(["plan", "--cache", "cache", "--minutes", "12"]) == 2
    assert "600 s" in json.loads(capsys.readouterr().out)["problems"][0]


def test_the_epoch_budget_fills_the_time_left_and_keeps_a_reserve():
    from training.fit.run import budget_epochs

    # 600 s budget, 5 % kept back: 570 - 100 s spent leaves 470 s, nine more 50 s epochs after the first
    assert budget_epochs(budget_s=600, elapsed_s=100, epoch_s=50, done=1, cap=200) == 10
    assert budget_epochs(budget_s=600, elapsed_s=100, epoch_s=50, done=1, cap=6) == 6
    assert budget_epochs(budget_s=600, elapsed_s=590, epoch_s=50, done=2, cap=200) == 2  # over: no more
    assert budget_epochs(budget_s=600, elapsed_s=0, epoch_s=0.0, done=1, cap=30) == 30


def test_the_device_script_checks_which_parts_have_arrived(tmp_path, capsys):
    """``scripts/device_train.sh check``, the command of a transfer call: exit 0 with every part there, 4 with
    one missing (and which)."""
    import os
    import sys
    from pathlib import Path

    code, out, _ = build(tmp_path, capsys, "--part-mib", "0.01")
    assert code == 0
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHON": sys.executable}
    command = ["bash", "scripts/device_train.sh", "check", "--cache", str(out)]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["caches"][str(out)]["missing"] == [] and report["environment"]["pillow_webp"] is True
    (out / "part-001.bin").unlink()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 4
    assert json.loads(done.stdout.strip().splitlines()[-1])["caches"][str(out)]["missing"] == ["part-001.bin"]
