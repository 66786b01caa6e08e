"""A callback for ``causaldiff fit --trainer.callbacks+=fit_clock.StepClock`` (benchmarks/ on PYTHONPATH): the wall
clock at the end of every training step, written as JSON to ``$FIT_CLOCK`` when training ends."""

from __future__ import annotations

import json
import os
import time

import pytorch_lightning as pl


class StepClock(pl.Callback):
    def __init__(self):
        self.stamps: list[float] = []
        self.batch = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.stamps.append(time.perf_counter())
        self.batch = batch["x"].shape[0]

    def on_train_end(self, trainer, pl_module) -> None:
        with open(os.environ["FIT_CLOCK"], "w") as f:
            json.dump({"stamps": self.stamps, "batch": self.batch}, f)
