"""``causaldiff fit / validate / test`` through LightningCLI; the data's graph and statistics flow into the model."""

from __future__ import annotations

import warnings

from pytorch_lightning.cli import LightningCLI

from causaldiff.data.datamodule import CausalDataModule
from causaldiff.training.module import CausalDiffAEModule


class CausalCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.size", "model.image_size")
        parser.link_arguments("data.graph_spec", "model.graph", apply_on="instantiate")
        parser.link_arguments("data.label_stats", "model.label_stats", apply_on="instantiate")
        parser.link_arguments("data.channels", "model.channels", apply_on="instantiate")


class PredictorCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.graph_spec", "model.graph", apply_on="instantiate")
        parser.link_arguments("data.label_stats", "model.label_stats", apply_on="instantiate")
        parser.link_arguments("data.channels", "model.channels", apply_on="instantiate")


def run_lightning_cli(argv: list[str]) -> None:
    """``fit``/``validate``/``test`` train the CausalDiffAE; ``fit-predictor`` trains the anti-causal predictor."""
    # the console script passes its own argv on purpose (sys.argv stays intact for DDP's re-launch)
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    if argv[0] == "fit-predictor":
        from causaldiff.evaluation.predictor import PredictorModule

        PredictorCLI(PredictorModule, CausalDataModule, args=["fit", *argv[1:]], seed_everything_default=0,
                     save_config_kwargs={"overwrite": True})
        return
    CausalCLI(
        CausalDiffAEModule, CausalDataModule, args=argv, seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"logger": {"class_path": "pytorch_lightning.loggers.CSVLogger",
                                     "init_args": {"save_dir": "runs"}}},
    )
