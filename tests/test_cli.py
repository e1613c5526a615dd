"""The `hf-semtok` console script and `parse_args_with_config` (HfArgumentParser + YAML): errors, help, precedence."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

import hf_semtok.demo
from hf_semtok.cli import main, parse_args_with_config
from hf_semtok.data import DatasetArguments
from hf_semtok.demo import QUICK_OVERRIDES, DemoConfig
from hf_semtok.lm.stages import LMStageArguments

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def runs(monkeypatch, tmp_path):
    """Replace `run_demo` with a recorder of `(config, out)`; the real demo never runs. Runs in a folder of its own,
    so the demo's run lock on its default `outputs/demo` never meets another test's or a real demo's."""
    monkeypatch.chdir(tmp_path)
    calls: list[tuple[DemoConfig, object]] = []

    def fake_run_demo(config=None, out=None):
        calls.append((config, out))
        return {}

    monkeypatch.setattr(hf_semtok.cli, "run_demo", fake_run_demo)
    return calls


def run_cli(runs, argv) -> DemoConfig:
    assert main(argv) == 0
    assert len(runs) == 1
    config, out = runs[0]
    assert isinstance(config, DemoConfig)
    assert out is sys.stdout
    return config


def changed_fields(config: DemoConfig) -> dict:
    default = DemoConfig()
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(DemoConfig)
        if getattr(config, f.name) != getattr(default, f.name)
    }


# ---------------------------------------------------------------- argparse


def test_no_command_is_an_argparse_error(runs, capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: hf-semtok" in err and "required: command" in err
    assert runs == []


def test_unknown_command_is_an_argparse_error(runs, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train"])
    assert exc.value.code == 2
    assert "invalid choice: 'train'" in capsys.readouterr().err
    assert runs == []


@pytest.mark.parametrize(
    ("argv", "option"), [(["demo", "--seed", "abc"], "--seed"), (["demo", "lora_r=many"], "--lora_r")]
)
def test_bad_demo_values_are_argparse_errors_naming_the_option(runs, capsys, argv, option):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and option in err
    assert runs == []


def test_demo_help_lists_the_options(runs, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hf-semtok demo")
    for option in ("--output_dir", "--seed", "--quick", "--config", "--no_progress", "--n_items", "--lora_r"):
        assert option in out
    assert "Items of the synthetic catalogue." in out  # the fields' metadata["help"]
    assert runs == []


def test_top_level_help_lists_demo(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "demo" in out and "Semantic IDs for generative recommendation." in out


# ---------------------------------------------------------------- DemoConfig from the options


def test_plain_demo_uses_the_defaults(runs, capsys):
    config = run_cli(runs, ["demo"])
    assert config == DemoConfig()
    assert capsys.readouterr().out == f"hf-semtok demo (full) -> {DemoConfig().output_dir}\n"


def test_argv_none_reads_sys_argv(runs, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["hf-semtok", "demo", "--seed", "5"])
    assert run_cli(runs, None).seed == 5


def test_quick_applies_quick_overrides(runs, capsys):
    config = run_cli(runs, ["demo", "--quick"])
    assert {key: getattr(config, key) for key in QUICK_OVERRIDES} == QUICK_OVERRIDES
    assert set(changed_fields(config)) <= set(QUICK_OVERRIDES)  # nothing else moves
    assert changed_fields(config)  # and --quick does change something
    assert isinstance(config.rqvae_epochs, float) and isinstance(config.n_items, int)
    assert capsys.readouterr().out.startswith("hf-semtok demo (quick) -> ")


def test_user_overrides_win_over_quick(runs):
    config = run_cli(runs, ["demo", "--quick", "n_items=50", "codebook_sizes=[4, 4, 4]"])
    assert config.n_items == 50
    assert config.codebook_sizes == [4, 4, 4]
    assert config.n_users == QUICK_OVERRIDES["n_users"]  # the other quick values stay


def test_seed_output_dir_and_no_progress(runs, tmp_path, capsys):
    out_dir = tmp_path / "demo out"
    config = run_cli(runs, ["demo", "--seed", "7", "--output_dir", str(out_dir), "--no_progress"])
    assert changed_fields(config) == {"seed": 7, "output_dir": str(out_dir), "progress": False}
    assert capsys.readouterr().out == f"hf-semtok demo (full) -> {out_dir}\n"


def test_key_value_overrides_are_typed(runs):
    config = run_cli(
        runs,
        [
            "demo",
            "cpt_epochs=2.5",
            "lora_r=4",
            "modalities=[text, image]",
            "sft_examples_per_user=none",
            "model_config={hidden_size: 32, num_layers: 1, num_heads: 2}",
            "sid_only_prompts=false",
        ],
    )
    assert changed_fields(config) == {
        "cpt_epochs": 2.5,
        "lora_r": 4,
        "modalities": ["text", "image"],
        "sft_examples_per_user": None,
        "model_config": {"hidden_size": 32, "num_layers": 1, "num_heads": 2},
        "sid_only_prompts": False,
    }


def test_yaml_config_is_read_and_options_win(runs, tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("n_items: 77\nseed: 1\nlora_r: 2\noutput_dir: from_yaml\ncodebook_sizes: [16, 4]\n")
    config = run_cli(runs, ["demo", "--config", str(path)])
    assert changed_fields(config) == {
        "n_items": 77,
        "seed": 1,
        "lora_r": 2,
        "output_dir": "from_yaml",
        "codebook_sizes": [16, 4],
    }
    runs.clear()
    config = run_cli(runs, ["demo", "--config", str(path), "--seed", "9", "lora_r=8", "--quick"])
    assert (config.seed, config.lora_r, config.output_dir) == (9, 8, "from_yaml")
    # --quick overrides the file too (it is a command-line option)
    assert config.n_items == QUICK_OVERRIDES["n_items"]


def test_unknown_override_key_is_a_clear_error(runs):
    with pytest.raises(ValueError, match=r"Unknown config key 'n_itmes'.*Did you mean 'n_items'\?") as err:
        main(["demo", "n_itmes=5"])
    assert "Valid keys:" in str(err.value) and "output_dir" in str(err.value)
    with pytest.raises(ValueError, match=r"Unknown config key 'num_beam'.*Did you mean 'num_beams'\?"):
        main(["demo", "--num_beam", "3"])  # no argparse abbreviation: a typo is an error, not a prefix match
    assert runs == []


def test_override_without_equals_is_a_clear_error(runs):
    with pytest.raises(ValueError, match=r"Cannot read the argument 'fast'.*key=value"):
        main(["demo", "fast"])
    assert runs == []


def test_list_and_null_overrides_in_both_spellings(runs):
    config = run_cli(runs, ["demo", "--codebook_sizes", "[4, 4]", "--modalities", "text", "image"])
    assert config.codebook_sizes == [4, 4] and config.modalities == ["text", "image"]
    runs.clear()
    assert run_cli(runs, ["demo", "--sft_examples_per_user", "null"]).sft_examples_per_user is None


def test_unknown_key_in_yaml_names_the_file(runs, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("num_beam: 3\n")
    with pytest.raises(
        ValueError,
        match=r"Unknown config key 'num_beam' in the config file .*typo\.yaml.*Did you mean 'num_beams'",
    ):
        main(["demo", "--config", str(path)])
    assert runs == []


def test_missing_yaml_file_is_a_clear_error(runs, tmp_path):
    with pytest.raises(ValueError, match=r"nope\.yaml' does not exist"):
        main(["demo", "--config", str(tmp_path / "nope.yaml")])
    assert runs == []


def test_bad_yaml_files_are_clear_errors(runs, tmp_path):
    """Issue 35: a folder or a name too long for the file system (OSError [Errno 36]), deep nesting
    (RecursionError) and a key given twice (silently the last) are errors naming the file."""
    with pytest.raises(ValueError, match=r"Config file .* is a folder; check the path given to --config"):
        main(["demo", "--config", str(tmp_path)])
    with pytest.raises(
        ValueError, match=r"cannot be looked up \(File name too long\); check the path given to --config"
    ):
        main(["demo", "--config", str(tmp_path / ("a" * 300 + ".yaml"))])
    deep = tmp_path / "deep.yaml"
    deep.write_text("seed: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ValueError, match=r"deep\.yaml' is nested too deeply to be a config"):
        main(["demo", "--config", str(deep)])
    twice = tmp_path / "twice.yaml"
    twice.write_text("seed: 1\nseed: 2\n")
    with pytest.raises(
        ValueError, match=r"twice\.yaml' is not valid YAML: the key 'seed' appears twice[\s\S]*line 2"
    ):
        main(["demo", "--config", str(twice)])
    assert runs == []


# ---------------------------------------------------------------- parse_args_with_config on the LM stage


def test_all_linear_stays_a_string_from_yaml_and_command_line(tmp_path):
    """`lora_target_modules: all-linear` must reach peft as the string (a list ['all-linear'] matches no module)."""
    path = ROOT / "recipes" / "configs" / "lora_synthetic.yaml"
    cfg, data = parse_args_with_config(
        [LMStageArguments, DatasetArguments], ["--config", str(path), "--output_dir", str(tmp_path)]
    )
    assert cfg.lora_target_modules == "all-linear" and data.dataset_format == "synthetic"
    (cfg,) = parse_args_with_config(LMStageArguments, ["--lora_target_modules", "all-linear"])
    assert cfg.lora_target_modules == "all-linear"
    (cfg,) = parse_args_with_config(LMStageArguments, ["--lora_target_modules", "q_proj", "v_proj"])
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]


def test_stage_arguments_are_training_arguments_and_the_command_line_wins(tmp_path):
    from transformers import TrainingArguments

    path = tmp_path / "stage.yaml"
    path.write_text(
        "max_steps: 300\nlearning_rate: 2e-4\nmodel_config: {hidden_size: 32}\nwindow_stride: 5\n"
    )
    argv = ["--config", str(path), "--max_steps", "2", "--window_stride", "none", "--optim", "adamw_torch"]
    (cfg,) = parse_args_with_config(LMStageArguments, argv)
    assert isinstance(cfg, TrainingArguments)
    assert cfg.max_steps == 2 and cfg.window_stride is None  # the command line wins over the file
    assert cfg.learning_rate == pytest.approx(2e-4)  # a number (YAML 1.1 alone would read the text "2e-4")
    assert cfg.model_config == {"hidden_size": 32} and cfg.optim == "adamw_torch"
    (cfg,) = parse_args_with_config(LMStageArguments, ["--model_config", "{hidden_size: 16}"])
    assert cfg.model_config == {"hidden_size": 16}


# ---------------------------------------------------------------- YAML values meet the command line's rules


def _parse_yaml(tmp_path, text: str, types_=(LMStageArguments,), argv=()):
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return parse_args_with_config(list(types_), ["--config", str(path), *argv])


def test_yaml_choice_outside_the_literal_is_refused(tmp_path):
    """`train_mode: bogus` used to train as LoRA: a Literal's choices were checked on the command line only."""
    with pytest.raises(
        ValueError, match=r"`train_mode: bogus` in the config file .* \('sid_embeddings', 'full'"
    ):
        _parse_yaml(tmp_path, "train_mode: bogus\n")
    with pytest.raises(ValueError, match=r"`lr_scheduler_type: cosin` .* Did you mean 'cosine'\?"):
        _parse_yaml(tmp_path, "lr_scheduler_type: cosin\n")  # an Enum of TrainingArguments: its values
    (cfg,) = _parse_yaml(tmp_path, "train_mode: full\nlr_scheduler_type: linear\n")
    assert cfg.train_mode == "full" and cfg.lr_scheduler_type == "linear"


def test_yaml_value_of_the_wrong_type_is_refused_with_the_fix(tmp_path):
    from hf_semtok.rqvae.sid_stage import SIDStageConfig

    with pytest.raises(TypeError, match=r"`epochs` .* must be a number; got str '1'\. .*`epochs: 1`"):
        _parse_yaml(tmp_path, "epochs: '1'\n", (SIDStageConfig,))
    with pytest.raises(TypeError, match=r"`max_steps` .* must be an integer; got float 2\.5"):
        _parse_yaml(tmp_path, "max_steps: 2.5\n")
    with pytest.raises(TypeError, match=r"`bf16` .* must be true or false; got str 'true'\. .*`bf16: true`"):
        _parse_yaml(tmp_path, "bf16: 'true'\n")
    with pytest.raises(
        TypeError, match=r"`hidden_sizes` .* must be a list, e\.g\. `hidden_sizes: \[16\]`; got int 16"
    ):
        _parse_yaml(tmp_path, "hidden_sizes: 16\n", (SIDStageConfig,))
    (sid,) = _parse_yaml(tmp_path, "epochs: 1\nlearning_rate: 1e-3\n", (SIDStageConfig,))
    assert sid.epochs == 1 and sid.learning_rate == pytest.approx(1e-3)  # `1e-3` is a number, as in YAML 1.2


def test_every_shipped_config_meets_the_rules():
    """The checks refuse nothing the recipes' own configs say (the Ray one needs a trained model: parsed up to it)."""
    import importlib.util

    def recipe(name):
        spec = importlib.util.spec_from_file_location(f"_recipe_{name}", ROOT / "recipes" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        return module

    from hf_semtok.rqvae.sid_stage import SIDStageConfig

    classes = {
        "cpt": [recipe("continued_pretraining").CPTArguments, DatasetArguments],
        "lora": [recipe("finetune_lora").LoRAArguments, DatasetArguments],
        "evaluate": [recipe("evaluate").EvaluateConfig, DatasetArguments],
        "rqvae": [recipe("train_rqvae").TrainRQVAEConfig, SIDStageConfig, DatasetArguments],
    }
    configs = sorted((ROOT / "recipes" / "configs").glob("*.yaml"))
    checked = 0
    for path in configs:
        kind = path.name.split("_")[0]
        if kind in classes:
            parse_args_with_config(classes[kind], ["--config", str(path)])
            checked += 1
    assert checked >= 12


def test_empty_output_dir_is_refused_and_tilde_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(
        ValueError, match=r"`output_dir` in the config file .* is empty, which would write into"
    ):
        _parse_yaml(tmp_path, "output_dir: ''\n")
    with pytest.raises(ValueError, match=r"--output_dir is empty"):
        parse_args_with_config(LMStageArguments, ["--output_dir", ""])
    (cfg,) = _parse_yaml(tmp_path, "output_dir: '~/runs/cpt'\n")
    assert cfg.output_dir == str(tmp_path / "home" / "runs" / "cpt")
    (cfg,) = parse_args_with_config(
        LMStageArguments, ["--output_dir=~/runs/x"]
    )  # bash leaves this one as typed
    assert cfg.output_dir == str(tmp_path / "home" / "runs" / "x")


def test_yaml_aliases_are_refused(tmp_path):
    """Nested aliases expand a kilobyte of YAML into megabytes (then written to recipe_config.yaml): refused."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    with pytest.raises(ValueError, match=r"uses a YAML alias, which is refused: found the alias \*a0"):
        _parse_yaml(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"found the alias \*base"):
        _parse_yaml(tmp_path, "model_config: &base {hidden_size: 32}\nextra: *base\n")


def test_num_heads_that_do_not_divide_hidden_size_are_refused_at_once(tmp_path):
    with pytest.raises(ValueError, match=r"num_heads=4 does not divide hidden_size=30.* \(e\.g\. 3\)"):
        _parse_yaml(tmp_path, "model_config: {hidden_size: 30, num_heads: 4}\n")
    with pytest.raises(ValueError, match=r"num_kv_heads=3 does not divide num_heads=4"):
        LMStageArguments(model_config={"hidden_size": 32, "num_heads": 4, "num_kv_heads": 3})
    with pytest.raises(
        ValueError, match=r"Unknown model_config key 'hidden_siz'\. Did you mean 'hidden_size'"
    ):
        LMStageArguments(model_config={"hidden_siz": 32})
    with pytest.raises(ValueError, match=r"num_heads=3 does not divide hidden_size=64"):
        DemoConfig(model_config={"hidden_size": 64, "num_heads": 3})


def test_a_recipe_refuses_a_bad_yaml_value_as_typed(tmp_path):
    """The recipe as a user runs it: the error names the key and the fix, and nothing is trained."""
    import os
    import subprocess

    path = tmp_path / "bad.yaml"
    path.write_text(f"train_mode: bogus\noutput_dir: {tmp_path / 'out'}\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "recipes/continued_pretraining.py", "--config", str(path)],
        cwd=ROOT,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "`train_mode: bogus` in the config file" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_empty_config_a_bad_yaml_option_a_seed_out_of_range_or_a_file_as_output_dir_are_named(tmp_path):
    """Probe 3: an empty --config ran the full default job without a word; a malformed YAML list gave a bare
    yaml ParserError; seed 10**30 gave numpy's range error naming no option; an output_dir that is a file gave a
    raw FileExistsError."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(
        ValueError, match=r"Config file .*empty.yaml' is empty; write the options as `key: value`"
    ):
        parse_args_with_config(LMStageArguments, ["--config", str(empty)])
    with pytest.raises(ValueError, match=r"--lora_target_modules .\[q_proj,. is not valid YAML"):
        parse_args_with_config(
            LMStageArguments, ["--output_dir", str(tmp_path), "--lora_target_modules", "[q_proj,"]
        )
    with pytest.raises(ValueError, match=r"--seed 1000000000000000000000000000000 is out of range"):
        parse_args_with_config(LMStageArguments, ["--output_dir", str(tmp_path), "--seed", str(10**30)])
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match=r"--output_dir '.*a_file' is a file, not a folder"):
        parse_args_with_config(LMStageArguments, ["--output_dir", str(tmp_path / "a_file")])
