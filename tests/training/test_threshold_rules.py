"""scripts/threshold_rules.py: how often a threshold rule misses its target sensitivity on held-out patients."""

import json

import numpy as np
import pytest

from tests.support.scripts import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("threshold_rules")


def test_the_confident_rule_misses_the_target_on_held_out_halves_far_less_often(script, tmp_path, capsys):
    rng = np.random.default_rng(2)
    labels = np.array([1] * 400 + [0] * 600)
    scores = np.concatenate([rng.uniform(0.0, 1.0, 400), rng.uniform(0.0, 0.5, 600)])
    np.savez(tmp_path / "validation_scores.npz", label=labels, probability=scores)
    args = [str(tmp_path), "--confidence", "0", "0.95", "--repeats", "300"]
    assert script.main(args) == 0
    point, confident = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert point["flagged"] == 380 and confident["flagged"] > 380
    assert confident["threshold"] < point["threshold"]
    assert confident["specificity"] < point["specificity"]
    assert point["half_split"]["short"] > 0.3
    assert confident["half_split"]["short"] < 0.12


def test_a_missing_score_file_is_a_clear_error(script, tmp_path, capsys):
    assert script.main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
