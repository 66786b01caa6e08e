"""CounterfactualConfig is the one list of inference settings: the CLI, a checkpoint's recommendation, augment's plan
and evaluate's report all come from it."""

import argparse
import csv
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from causaldiff.checkpoint import recommended_settings
from causaldiff.cli import main
from causaldiff.commands.augment import plan_config
from causaldiff.commands.common import add_inference_args
from causaldiff.inference.config import CounterfactualConfig, check_recommendation, first_difference

FIELDS = [f.name for f in dataclasses.fields(CounterfactualConfig)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_inference_args(p)
    return p


def test_the_cli_flags_are_the_configs_fields_and_no_more():
    flags = {s for a in parser()._actions for s in a.option_strings} - {"-h", "--help", "--checkpoint", "--input"}
    assert flags == {"--" + f.replace("_", "-") for f in FIELDS} | {"--no-keep-unchanged"}
    assert len(FIELDS) <= 9  # the eight of the lean product, and precision (bf16 where native, float32 on request)
    args = parser().parse_args(["--checkpoint", "x", "--steps", "7", "--guidance", "2.5", "--depth", "0.5",
                                "--inversion", "residual", "--keep-unchanged", "--seed", "3", "--batch-size", "5",
                                "--device", "cpu"])
    config = CounterfactualConfig.from_args(args, {})
    assert config == CounterfactualConfig(7, 2.5, 0.5, "residual", True, 3, 5, "cpu")
    for bad in (["--inversion", "fixed-point"], ["--guide-against", "masked"], ["--findings", "decode"]):
        with pytest.raises(SystemExit):  # ablations and removed switches are no flags
            parser().parse_args(["--checkpoint", "x", *bad])


def test_a_setting_not_given_takes_the_checkpoints_recommendation_and_a_given_one_wins():
    brain = recommended_settings("brain32")
    assert brain == {"inversion": "residual", "keep_unchanged": True, "depth": 0.75}
    assert recommended_settings("pendulum32") == {**brain, "depth": 0.75}
    assert recommended_settings("morpho32") == {**brain, "depth": 1.0}
    config = lambda *flags: CounterfactualConfig.from_args(parser().parse_args(["--checkpoint", "brain32", *flags]),  # noqa: E731
                                                           brain)
    assert (config().inversion, config().keep_unchanged, config().depth, config().steps) == ("residual", True, 0.75, 50)
    assert config("--no-keep-unchanged").keep_unchanged is False
    assert config("--inversion", "ddim", "--depth", "1").inversion == "ddim"
    with pytest.raises(ValueError, match=r"unknown inference setting\(s\) \['findings', 'guide_against'\]"):
        check_recommendation({"guide_against": "masked", "findings": "transplant", "depth": 0.75})
    with pytest.raises(ValueError, match=r"depth must be in \(0, 1\]"):
        CounterfactualConfig(depth=0)
    with pytest.raises(ValueError, match="steps and batch_size must be >= 1"):
        CounterfactualConfig(steps=0)


def test_every_field_reaches_the_cli_the_recommendation_the_plan_and_the_report(tiny_ckpt):
    from causaldiff.evaluation.evaluate import Evaluator, eval_data
    from causaldiff.models.causal_diffae import CausalDiffAE

    dests = {a.dest for a in parser()._actions}
    config = CounterfactualConfig(steps=2, batch_size=8)
    report = Evaluator(CausalDiffAE.from_checkpoint(tiny_ckpt), None, eval_data(tiny_ckpt, 8), config, cycles=1,
                       variants=["causaldiff"], progress=False).run()
    for name in FIELDS:
        assert name in dests, name  # a flag
        assert name in report["meta"]["config"], name  # in the report
        assert name in plan_config(config) or name == "device", name  # in augment's plan (the device shapes no image)
    assert report["meta"]["config"] == config.asdict()
    assert set(CounterfactualConfig.recommendable()) == {"steps", "guidance", "depth", "inversion", "keep_unchanged"}
    assert check_recommendation(dict.fromkeys(CounterfactualConfig.recommendable(), 1)) is not None
    assert first_difference({"a": 1, "b": 2}, {"a": 1, "b": 3}) == "b" and first_difference({"a": 1}, {"a": 1}) is None


def test_a_command_reads_the_checkpoint_once_and_never_imports_lightning(tmp_path):
    """``causaldiff counterfactual --checkpoint brain32`` on a folder: one torch.load, no Lightning, no DataModule
    (the site bank comes from the checkpoint), and the lesion is transplanted."""
    main(["data", "make", "brain", "--n", "6", "--size", "32", "--out", str(tmp_path / "in")])
    script = f"""
import sys, torch
for name in ("pytorch_lightning", "lightning", "lightning_fabric"):
    sys.modules[name] = None  # any import of them fails
calls, load = [], torch.load
torch.load = lambda *a, **k: calls.append(a[0]) or load(*a, **k)
from causaldiff.cli import main
main(["counterfactual", "--checkpoint", "brain32", "--input", r"{tmp_path / 'in'}", "--do", "lesion=1",
      "--steps", "4", "--out", r"{tmp_path / 'out'}"])
assert not any(m in sys.modules for m in ("causaldiff.data.datamodule", "causaldiff.training.module"))
print("loads", len(calls))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "loads 1" in run.stdout
    rows = list(csv.DictReader((tmp_path / "out" / "labels.csv").open()))
    assert len(rows) == 6 and all(float(r["lesion"]) == 1 for r in rows)


def test_help_imports_no_torch():
    run = subprocess.run([sys.executable, "-c", "import sys; from causaldiff.cli import main\n"
                          "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
                          "print('torch' in sys.modules)"], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip().endswith("False"), run.stderr[-2000:]


def test_a_shipped_models_recommendation_is_listed_as_flags(capsys):
    main(["models"])
    out = capsys.readouterr().out
    assert "recommends (used unless given): --inversion residual --keep-unchanged --depth 0.75" in out
    assert out.count("recommends") == 3  # each shipped model carries its fit's choice
    assert "recommends (used unless given): --inversion residual --keep-unchanged --depth 1.0" in out  # morpho32


def test_models_yaml_states_the_recommendation_each_checkpoint_stores():
    from causaldiff.checkpoint import shipped_models

    for name, info in shipped_models().items():
        assert info.get("inference", {}) == recommended_settings(name), name


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).parent.parent / "configs").glob("*.yaml")
                                        if p.stem != "predictor"))
def test_every_shipped_fit_config_parses(name, capsys):
    """Every key of every shipped config is an argument of the classes it configures (a typo fails here, not after
    the data is rendered); a staged one's stages add up to its max_steps."""
    import yaml

    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", name, "--print_config"])
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    stages = printed["model"].get("stages")
    if stages:
        assert sum(s["steps"] for s in stages) == printed["trainer"]["max_steps"]
