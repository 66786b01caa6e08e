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
