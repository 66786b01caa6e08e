import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

PENDULUM_GRAPH = {
    "pendulum_angle": {"kind": "continuous"},
    "light_angle": {"kind": "continuous"},
    "shadow_length": {"kind": "continuous", "parents": ["pendulum_angle", "light_angle"]},
    "shadow_position": {"kind": "continuous", "parents": ["pendulum_angle", "light_angle"]},
}


@pytest.fixture
def pendulum_graph():
    from causaldiff.graph import CausalGraph

    return CausalGraph.from_dict(PENDULUM_GRAPH)


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Train configs/tiny.yaml for 300 steps once per test run, with its quality report; returns the run folder."""
    from pathlib import Path

    from causaldiff.cli import main

    root = tmp_path_factory.mktemp("tiny")
    config = Path(__file__).parent.parent / "configs" / "tiny.yaml"
    cwd = os.getcwd()
    os.chdir(root)
    try:
        main(["fit", "--config", str(config), "--trainer.max_steps=300", "--report.n=16", "--report.steps=4",
              "--report.choose=false"])  # tests read the checkpoint at the defaults; choosing is tested on a copy
    finally:
        os.chdir(cwd)
    return root / "runs" / "tiny"


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_run):
    return tiny_run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def tiny_predictor(tmp_path_factory):
    """An anti-causal predictor for the tiny pendulum data (a few epochs, seconds)."""
    from causaldiff.cli import main

    root = tmp_path_factory.mktemp("predictor")
    config = __import__("pathlib").Path(__file__).parent.parent / "configs" / "tiny.yaml"  # the model's data
    main(["fit-predictor", "--config", str(config), "--trainer.max_epochs=3", f"--trainer.default_root_dir={root}",
          "--trainer.enable_progress_bar=false"])
    return root / "checkpoints" / "last.ckpt"
