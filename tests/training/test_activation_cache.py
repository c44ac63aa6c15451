"""``fit --activation-cache``: the frozen-bottom activations of cached mode are kept between runs, so the
members of an ensemble that differ only in seed compute them once (18 minutes per Lite0 on both data sets)."""

import numpy as np
import pytest

from tests.training.test_data_metrics import write_dataset
from training.data import load_dataset, make_split

pytestmark = [pytest.mark.training, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
tf = pytest.importorskip("tensorflow")
tf.get_logger().setLevel("ERROR")


def test_members_that_differ_in_seed_share_saved_activations(tmp_path):
    """--activation-cache: the first run saves the frozen-bottom activations, a run with another seed loads
    them instead of recomputing, and they equal what that run would have computed itself; another split
    point is another cache."""
    from training.__main__ import main

    csv_path = write_dataset(tmp_path / "data", n=48, size=40)
    split = tmp_path / "split.json"
    make_split(load_dataset(str(csv_path)), k=4, fold=0, seed=0).save(split)  # every run: the same images
    args = ["fit", "--data", str(csv_path), "--backbone", "efficientnet_lite0", "--image-size", "32"]
    args += ["--split", str(split), "--head-epochs", "1", "--finetune-epochs", "1"]
    args += ["--batch-size", "8", "--head-batch", "16", "--cache-variants", "2"]
    shared, fresh = tmp_path / "shared", tmp_path / "fresh"
    for seed, cache, blocks in (
        ("1", shared, "2"),
        ("2", shared, "2"),
        ("2", fresh, "2"),
        ("2", shared, "3"),
    ):
        run = tmp_path / f"s{seed}_{cache.name}_{blocks}"
        assert (
            main(
                [
                    *args,
                    "--seed",
                    seed,
                    "--top-blocks",
                    blocks,
                    "--run-dir",
                    str(run),
                    "--activation-cache",
                    str(cache),
                ]
            )
            == 0
        )
    log = (tmp_path / "s2_shared_2" / "log.txt").read_text()
    assert "activation cache: loaded" in log
    assert "activation cache: loaded" not in (tmp_path / "s1_shared_2" / "log.txt").read_text()
    assert "activation cache: loaded" not in (tmp_path / "s2_shared_3" / "log.txt").read_text()
    assert len(list(shared.iterdir())) == 2  # one per split point
    (key,) = [p.name for p in fresh.iterdir()]
    for name in ("train", "val"):
        saved, recomputed = np.load(shared / key / f"{name}.npy"), np.load(fresh / key / f"{name}.npy")
        assert saved.dtype == np.float16 and np.abs(saved).max() > 0
        np.testing.assert_allclose(saved.astype(np.float32), recomputed.astype(np.float32), atol=2e-3)
    assert np.load(shared / key / "train.npy").shape[0] == 2  # the variants
