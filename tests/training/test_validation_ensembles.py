"""scripts/validation_ensembles.py: the ensemble numbers in docs/training.md come from saved validation scores."""

from pathlib import Path

import numpy as np
import pytest

from tests.support.scripts import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("validation_ensembles")


def write_run(folder: Path, ids, labels, probability) -> Path:
    folder.mkdir(parents=True)
    np.savez(folder / "val_predictions.npz", image_id=ids, label=labels, probability=probability[:, None])
    return folder


def test_combos_reads_runs_and_a_packages_members_and_ranks_every_combination(script, tmp_path, capsys):
    ids = np.array([f"ISIC_{i:07d}" for i in range(6)])
    labels = np.array([0, 0, 0, 1, 1, 1])
    good = write_run(tmp_path / "good", ids, labels, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]))
    noisy = write_run(tmp_path / "noisy", ids, labels, np.array([0.6, 0.2, 0.3, 0.1, 0.8, 0.9]))
    package = tmp_path / "package"
    package.mkdir()
    np.savez(
        package / "validation_scores.npz",
        image_id=ids,
        label=labels,
        probability=np.full(6, 0.5),
        member_a=np.array([0.9, 0.2, 0.3, 0.7, 0.8, 0.1]),
    )
    assert script.main(["combos", str(good), str(noisy), str(package), str(tmp_path / "missing")]) == 0
    out = capsys.readouterr()
    assert "skipped:" in out.err and "missing" in out.err
    assert "1.0000  good" in out.out and "package:a" in out.out
    assert "4 combinations; best:" in out.out  # 3 pairs + 1 triple
    from training.evaluate import roc_auc

    scores = {
        "good": [0.1, 0.2, 0.3, 0.7, 0.8, 0.9],
        "noisy": [0.6, 0.2, 0.3, 0.1, 0.8, 0.9],
        "package:a": [0.9, 0.2, 0.3, 0.7, 0.8, 0.1],
    }
    expected = sorted(
        roc_auc(labels, np.mean([scores[n] for n in names], axis=0))
        for names in (("good", "noisy"), ("good", "package:a"), ("noisy", "package:a"), tuple(scores))
    )[::-1]
    ranked = [float(line.split()[0]) for line in out.out.splitlines()[4:]]
    assert ranked == pytest.approx(expected, abs=1e-4)


def test_runs_that_scored_other_images_are_refused(script, tmp_path):
    labels = np.array([0, 1])
    a = write_run(tmp_path / "a", np.array(["x", "y"]), labels, np.array([0.1, 0.9]))
    b = write_run(tmp_path / "b", np.array(["x", "z"]), labels, np.array([0.1, 0.9]))
    with pytest.raises(SystemExit, match="scores other images"):
        script.main(["combos", str(a), str(b)])
