from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from hf_semtok.config_utils import config_to_dict, load_config, parse_recipe_args


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)


@dataclass
class Recipe:
    """A toy recipe config."""

    data_dir: str | None = None
    dataset_format: Literal["synthetic", "lcrec"] = "synthetic"
    epochs: int = 3
    learning_rate: float = 1e-3
    codebook_sizes: list[int] = field(default_factory=lambda: [8, 8])
    use_cpu: bool = False
    weights: dict[str, float] = field(default_factory=dict)
    optim: Optim = field(default_factory=Optim)


def test_defaults_without_file_or_overrides():
    assert load_config(None, [], Recipe) == Recipe()


def test_yaml_then_overrides_in_every_spelling(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "epochs: 7\nlearning_rate: 1e-2\ncodebook_sizes: [16, 8, 4]\ndata_dir: /data\noptim: {lr: 0.5}\n"
    )
    cfg = load_config(
        path,
        ["--epochs", "9", "--use_cpu", "learning_rate=0.25", "--codebook_sizes=[4,4]", "--optim.lr", "2"],
        Recipe,
    )
    assert cfg.epochs == 9
    assert cfg.use_cpu is True
    assert cfg.learning_rate == 0.25 and isinstance(cfg.learning_rate, float)
    assert cfg.codebook_sizes == [4, 4]
    assert cfg.data_dir == "/data"
    assert cfg.optim == Optim(lr=2.0, betas=(0.9, 0.99))


def test_yaml_scientific_notation_string_becomes_float(tmp_path):
    # PyYAML reads `1e-2` (no dot) as a string; the declared float type fixes it.
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-2\n")
    assert load_config(path, [], Recipe).learning_rate == pytest.approx(0.01)


def test_conversions_lists_bools_none_dict_literal():
    cfg = load_config(
        None,
        [
            "--codebook_sizes",
            "32,16",
            "--use_cpu",
            "false",
            "--data_dir",
            "none",
            "weights={text: 1, image: 0.5}",
        ],
        Recipe,
    )
    assert cfg.codebook_sizes == [32, 16]
    assert cfg.use_cpu is False
    assert cfg.data_dir is None
    assert cfg.weights == {"text": 1.0, "image": 0.5}
    assert load_config(None, ["--dataset_format", "lcrec"], Recipe).dataset_format == "lcrec"
    assert load_config(None, ["--optim.betas", "[0.5, 0.6]"], Recipe).optim.betas == (0.5, 0.6)


def test_unknown_key_lists_valid_keys_and_closest_match(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown config key 'epoch'.*Did you mean 'epochs'.*Valid keys:"):
        load_config(None, ["--epoch", "3"], Recipe)
    path = tmp_path / "c.yaml"
    path.write_text("learnin_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"'learnin_rate'.*Did you mean 'learning_rate'"):
        load_config(path, [], Recipe)
    with pytest.raises(ValueError, match=r"Unknown config key 'lrr'.*Did you mean 'lr'"):
        load_config(None, ["optim.lrr=1"], Recipe)


def test_bad_values_raise_with_the_key():
    with pytest.raises(ValueError, match=r"'epochs'.*integer"):
        load_config(None, ["--epochs", "three"], Recipe)
    with pytest.raises(ValueError, match=r"'dataset_format'.*not one of"):
        load_config(None, ["--dataset_format", "csv"], Recipe)
    with pytest.raises(ValueError, match=r"'use_cpu'.*boolean"):
        load_config(None, ["--use_cpu=maybe"], Recipe)
    with pytest.raises(ValueError, match="needs a value"):
        load_config(None, ["--epochs"], Recipe)
    with pytest.raises(ValueError, match="Cannot read the argument"):
        load_config(None, ["stray"], Recipe)


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", [], Recipe)
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(path, [], Recipe)


def test_parse_recipe_args_reads_config_flag_and_round_trips(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 2\n")
    cfg = parse_recipe_args(Recipe, ["--config", str(path), "--epochs", "4"])
    assert cfg.epochs == 4
    assert parse_recipe_args(Recipe, [f"--config={path}"]).epochs == 2
    # config_to_dict output feeds back into load_config unchanged
    dumped = tmp_path / "dump.yaml"
    import yaml

    dumped.write_text(yaml.safe_dump(config_to_dict(cfg)))
    assert load_config(dumped, [], Recipe) == cfg
    with pytest.raises(SystemExit):
        parse_recipe_args(Recipe, ["--help"])
    assert "--learning_rate" in capsys.readouterr().out
