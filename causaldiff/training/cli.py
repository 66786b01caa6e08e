"""``causaldiff fit / validate / test`` through LightningCLI; the data's graph and statistics flow into the model."""

from __future__ import annotations

import os
import tempfile
import warnings
from importlib import resources
from pathlib import Path

import yaml
from pytorch_lightning.cli import LightningCLI

from causaldiff.data.datamodule import CausalDataModule
from causaldiff.training.module import CausalDiffAEModule

DEFAULT_LOG_DIR = "<default_root_dir>"  # stands for the run's root until _place_outputs knows it


def _place_outputs(config) -> None:
    """Everything a run writes goes under ``trainer.default_root_dir``: checkpoints (when their folder is not given)
    in ``<root>/checkpoints``, unversioned so that rerunning the same command finds ``last.ckpt`` to resume from,
    and the logger's files (when its ``save_dir`` is not given) in ``<root>``."""
    trainer = config.trainer
    root = trainer.default_root_dir or os.getcwd()
    for cb in trainer.callbacks or []:
        if str(cb.class_path).endswith("ModelCheckpoint") and cb.init_args.get("dirpath") is None:
            cb.init_args.dirpath = os.path.join(root, "checkpoints")
    logger = trainer.logger
    if hasattr(logger, "init_args") and logger.init_args.get("save_dir") in (None, DEFAULT_LOG_DIR):
        logger.init_args.save_dir = root


class RootedCLI(LightningCLI):
    """A LightningCLI whose run writes everything under ``trainer.default_root_dir`` (see :func:`_place_outputs`)."""

    def before_instantiate_classes(self) -> None:
        _place_outputs(self.config[self.subcommand] if self.subcommand else self.config)


class CausalCLI(RootedCLI):
    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        trainer = (self.config[self.subcommand] if self.subcommand else self.config).trainer
        if trainer.precision is not None:
            trainer.precision = _runnable_precision(str(trainer.precision), str(trainer.accelerator))

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--report.n", type=int, default=64,
                            help="held-out items of the quality report written at the end of fit (0: none)")
        parser.add_argument("--report.steps", type=int, default=20, help="DDIM steps of that report")
        parser.add_argument("--report.choose", type=bool, default=True,
                            help="measure the candidate inference settings on held-out items first and store the best "
                                 "in the checkpoint as its recommendation")
        parser.link_arguments("data.size", "model.image_size")
        parser.link_arguments("data.graph_spec", "model.graph", apply_on="instantiate")
        parser.link_arguments("data.label_stats", "model.label_stats", apply_on="instantiate")
        parser.link_arguments("data.channels", "model.channels", apply_on="instantiate")


class PredictorCLI(RootedCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.graph_spec", "model.graph", apply_on="instantiate")
        parser.link_arguments("data.label_stats", "model.label_stats", apply_on="instantiate")
        parser.link_arguments("data.channels", "model.channels", apply_on="instantiate")


def _runnable_precision(precision: str, accelerator: str) -> str:
    """``precision``, but 32-true for bf16 on a CPU without native bf16 (:func:`~causaldiff.precision.native_bf16`),
    where it would run many times slower; says so in one line."""
    import torch

    from causaldiff.precision import native_bf16

    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if precision.startswith("bf16") and on_cpu and not native_bf16("cpu"):
        print(f"precision {precision}: this CPU has no native bf16 (AVX512-BF16 / AMX), where it would train many "
              "times slower; training in 32-true")
        return "32-true"
    return precision


def packaged_config(name: str) -> Path:
    """A config shipped with the package, by name (``pendulum32`` or ``pendulum32.yaml``)."""
    found = resources.files("causaldiff") / "configs" / (name if name.endswith(".yaml") else f"{name}.yaml")
    if not found.is_file():
        raise FileNotFoundError(f"config not found: {name} (neither a file nor one of the shipped configs)")
    return Path(str(found))


def _configs(argv: list[str]) -> list[str]:
    """argv with each ``--config NAME`` that is not a file resolved to the shipped config of that name."""
    out = list(argv)
    for i, arg in enumerate(out):
        key, eq, value = arg.partition("=")
        if key == "--config" and eq and not Path(value).is_file():
            out[i] = f"--config={packaged_config(value)}"
        elif arg == "--config" and i + 1 < len(out) and not Path(out[i + 1]).is_file():
            out[i + 1] = str(packaged_config(out[i + 1]))
    return out


def _data_only(argv: list[str], tmp: Path) -> list[str]:
    """``fit-predictor`` argv: the shipped predictor settings first, then each given config reduced to its data
    section and seed (a model's fit config carries the data the predictor must learn from)."""
    out, keep = ["--config", str(packaged_config("predictor"))], ("data", "seed_everything")
    it = iter(argv)
    for arg in it:
        key, eq, value = arg.partition("=")
        if key == "--config":
            src = Path(value if eq else next(it))
            cfg = yaml.safe_load(src.read_text()) or {}
            dst = tmp / f"{len(out)}_{src.name}"
            dst.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if k in keep}))
            out += ["--config", str(dst)]
        else:
            out.append(arg)
    return out


def run_lightning_cli(argv: list[str]) -> None:
    """``fit``/``validate``/``test`` train the CausalDiffAE; ``fit-predictor`` trains the anti-causal predictor."""
    # the console script passes its own argv on purpose (sys.argv stays intact for DDP's re-launch)
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    argv = [argv[0], *_configs(argv[1:])]
    if argv[0] == "fit-predictor":
        from causaldiff.evaluation.predictor import PredictorModule

        with tempfile.TemporaryDirectory() as tmp:
            PredictorCLI(PredictorModule, CausalDataModule, args=["fit", *_data_only(argv[1:], Path(tmp))],
                         seed_everything_default=0, save_config_kwargs={"overwrite": True})
        return
    cli = CausalCLI(
        CausalDiffAEModule, CausalDataModule, args=argv, seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"logger": {"class_path": "pytorch_lightning.loggers.CSVLogger",
                                     "init_args": {"save_dir": DEFAULT_LOG_DIR}}},
    )
    if argv[0] == "fit":
        write_report(cli)


def write_report(cli: CausalCLI) -> None:
    """The quality report of the fit's last checkpoint, in ``<root>/report`` (rank zero; ``--report.n=0``: none)."""
    settings = cli.config["fit"]["report"]
    last = cli.trainer.checkpoint_callback.last_model_path if cli.trainer.checkpoint_callback else ""
    if settings.n <= 0 or not cli.trainer.is_global_zero or not last:
        return
    from causaldiff.evaluation.quality_report import quality_report, summary

    out = Path(last).parent.parent / "report"
    report = quality_report(last, out, settings.n, settings.steps, choose_settings=settings.choose)
    print(summary(report) + f"\nquality report: {out / 'report.md'}")
