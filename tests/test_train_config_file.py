"""Training settings from the command line: ``--config FILE``, ``--set KEY=VALUE``, flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from artifact.errors import TrainConfigError
from tests.cli_support import explain, invoke
from training.config_file import build_train_config, parse_set
from training.train import TrainConfig


def test_file_then_sets_then_flags(tmp_path: Path) -> None:
    toml = tmp_path / "train.toml"
    toml.write_text(
        'quality_weight = 0.7\nctr_loss = "huber"\nlearning_rate = 0.001\n[features]\nmin_df = 3\n',
        encoding="utf-8",
    )
    config = build_train_config(
        toml,
        ["learning_rate=0.002", "pos_weight=2", "features.char_ngrams=[2, 4]", "ctr_loss=mse"],
        {"epochs": 5, "seed": None},
    )
    defaults = TrainConfig()
    assert (config.quality_weight, config.learning_rate, config.pos_weight) == (0.7, 0.002, 2.0)
    assert config.ctr_loss == "mse" and config.epochs == 5 and config.seed == defaults.seed
    # a partial feature group keeps the trainer's other feature defaults (not FeatureConfig's)
    assert config.features.min_df == 3 and config.features.char_ngrams == (2, 4)
    assert config.features.word_ngrams == defaults.features.word_ngrams
    assert config.features.max_features_per_title == defaults.features.max_features_per_title


def test_json_file_and_no_sources_give_the_defaults(tmp_path: Path) -> None:
    assert build_train_config() == TrainConfig()
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"rank_weight": 0.5, "features": {"word_ngrams": None}}), encoding="utf-8")
    config = build_train_config(path)
    assert config.rank_weight == 0.5 and config.features.word_ngrams is None


@pytest.mark.parametrize(
    ("item", "path", "value"),
    [
        ("quality_weight=0.5", ["quality_weight"], 0.5),
        ("ctr_loss=huber", ["ctr_loss"], "huber"),
        ("pos_weight=null", ["pos_weight"], None),
        ("wide=false", ["wide"], False),
        ("features.char_ngrams=[1,3]", ["features", "char_ngrams"], [1, 3]),
        ("note=a=b", ["note"], "a=b"),
    ],
)
def test_parse_set(item: str, path: list[str], value: object) -> None:
    assert parse_set(item) == (path, value)


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["learning_rat=0.1"], "learning_rat: Extra inputs are not permitted"),
        (["learning_rate=-1"], "learning_rate: Input should be greater than 0"),
        (["features.char_ngrams=[4,2]"], "features.char_ngrams"),
        (["quality_weight"], "expected KEY=VALUE"),
        (["=3"], "expected KEY=VALUE"),
        (["epochs=3", "epochs.x=1"], "epochs is not a group of settings"),
    ],
)
def test_bad_settings_name_what_is_wrong(sets: list[str], expected: str) -> None:
    with pytest.raises(TrainConfigError) as info:
        build_train_config(None, sets)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("c.json", "{not json", "not valid JSON"),
        ("c.toml", "x = = 1", "not valid TOML"),
        ("c.json", "[1, 2]", "expected an object of training settings, got list"),
        ("c.json", '{"dropout": 1.5}', "c.json: invalid training configuration: dropout"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TrainConfigError) as info:
        build_train_config(path)
    assert expected in str(info.value)
    with pytest.raises(TrainConfigError, match="cannot read"):
        build_train_config(tmp_path / "missing.toml")


def test_resume_accepts_only_epochs_and_seed() -> None:
    assert build_train_config(None, ["seed=3"], {"epochs": 2}, resuming=True).seed == 3
    with pytest.raises(TrainConfigError, match="only epochs and seed apply; remove learning_rate, wide"):
        build_train_config(None, ["learning_rate=0.1", "wide=false"], resuming=True)


@pytest.mark.slow
def test_train_command_takes_settings_into_the_checkpoint(tmp_path: Path, sample_dir: Path) -> None:
    config = tmp_path / "train.toml"
    config.write_text("quality_weight = 0.6\ndropout = 0.1\n", encoding="utf-8")
    out = tmp_path / "run"
    args = ["train", "--data", sample_dir / "train.csv", "--out", out, "--epochs", "1"]
    result = invoke(*args, "--config", config, "--set", "hidden_dim=24", "--set", "ctr_loss=mse")
    assert result.exit_code == 0, explain(result)
    stored = json.loads(torch.load(out / "best.pt", weights_only=True)["train_config"])
    assert (stored["quality_weight"], stored["dropout"], stored["hidden_dim"], stored["ctr_loss"]) == (
        0.6,
        0.1,
        24,
        "mse",
    )
    assert stored["epochs"] == 1

    bad = invoke(*args[:-2], "--resume", out / "best.pt", "--set", "dropout=0.2")
    assert bad.exit_code == 2, explain(bad)
    assert bad.stderr.strip().splitlines() == [
        "error: with --resume the checkpoint's training configuration is kept and only epochs and "
        "seed apply; remove dropout"
    ]
    typo = invoke(*args, "--set", "hiden_dim=24")
    assert typo.exit_code == 2 and "hiden_dim: Extra inputs are not permitted" in typo.stderr, explain(typo)


def test_retrain_command_validates_settings_before_training(tmp_path: Path, sample_dir: Path) -> None:
    registry = tmp_path / "registry"
    result = invoke(
        "retrain", "--data", sample_dir / "train.csv", "--registry", registry, "--set", "ctr_loss=l3"
    )
    assert result.exit_code == 2, explain(result)
    assert "ctr_loss: Input should be 'mse', 'l1' or 'huber'" in result.stderr, explain(result)
    assert not registry.exists() or not any(registry.iterdir())
