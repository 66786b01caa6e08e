import json

import pytest
import torch

from causaldiff.checkpoint import resolve_checkpoint, shipped_models
from causaldiff.cli import main
from causaldiff.models.causal_diffae import CausalDiffAE


def test_shipped_models_are_listed_small_and_safe(capsys):
    models = shipped_models()
    assert set(models) == {"pendulum32", "morpho32", "brain32"}
    total = sum(__import__("os").path.getsize(m["path"]) for m in models.values())
    assert total < 25 * 2**20
    for name, info in models.items():
        ckpt = torch.load(info["path"], weights_only=True)  # plain tensors and data only
        assert ckpt["datamodule_hyper_parameters"]["world"] == name[:-2]
        assert "true_cf_image_l1" in info["metrics"]
    main(["models"])
    assert "pendulum32" in capsys.readouterr().out
    model = CausalDiffAE.from_checkpoint("brain32")
    assert model.channels == 1 and bool(model.scm.fitted)
    with pytest.raises(FileNotFoundError, match="shipped models: pendulum32"):
        resolve_checkpoint("mnist32")


@pytest.mark.slow
def test_demo_writes_grid_and_report(tmp_path, capsys):
    main(["demo", "--out", str(tmp_path / "demo"), "--steps", "3"])
    out = capsys.readouterr().out
    assert "demo done" in out and (tmp_path / "demo" / "grid.png").is_file()
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["variants"]["causaldiff"]["true_cf_image_l1"] < report["variants"]["no-abduction"]["true_cf_image_l1"]
