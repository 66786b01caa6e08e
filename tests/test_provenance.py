"""A folder written by ``data make`` carries its world's recipe: its images' true counterfactuals are rendered again,
so a model trained through the folder path is measured against the truth."""

from pathlib import Path

import pytest
import torch

from causaldiff.cli import main
from causaldiff.data.folder import FolderDataset
from causaldiff.data.provenance import folder_truth
from causaldiff.evaluation.evaluate import eval_data
from causaldiff.pixels import to_unit

CONFIG = Path(__file__).parent.parent / "configs" / "tiny.yaml"


def test_a_made_folder_renders_its_truth_again_and_refuses_edited_labels(tmp_path):
    out = tmp_path / "strokes"
    main(["data", "make", "strokes", "--n", "40", "--size", "16", "--seed", "3", "--out", str(out)])
    ds = FolderDataset(out, size=16, channels=1)
    world, exo = folder_truth(out, ds.files, ds.labels, 16)
    assert world.name == "strokes" and exo["u_digit"].shape == (40,)
    images = torch.stack([ds[i]["x"] for i in range(40)])
    assert torch.equal(to_unit(world.render(exo, ds.labels)), images)  # the folder's images, rendered again
    _, true_cf = world.counterfactual(exo, ds.labels, "fracture=1")
    assert (true_cf.float() - world.render(exo, ds.labels).float()).abs().sum() > 0
    assert folder_truth(out, ds.files, ds.labels, 32) is None  # resized images: their truth is not these renders
    csv = (out / "labels.csv").read_text().splitlines()
    cells = csv[1].split(",")
    cells[1] = "7" if cells[1] != "7" else "8"  # row 1's digit edited
    (out / "labels.csv").write_text("\n".join([csv[0], ",".join(cells), *csv[2:]]) + "\n")
    ds = FolderDataset(out, size=16, channels=1)
    with pytest.raises(ValueError, match="the labels of 'digit' differ from the world's; was labels.csv edited"):
        folder_truth(out, ds.files, ds.labels, 16)


def test_a_model_fitted_through_the_folder_path_is_read_against_the_truth(tmp_path):
    out = tmp_path / "pend"
    main(["data", "make", "pendulum", "--n", "120", "--size", "16", "--out", str(out)])
    main(["fit", "--config", str(CONFIG), "--data.world=null", f"--data.folder={out}", "--data.folder_channels=3",
          "--trainer.max_steps=2", f"--trainer.default_root_dir={tmp_path / 'run'}"])
    data = eval_data(tmp_path / "run" / "checkpoints" / "last.ckpt", 8)
    assert data.world is not None and data.world.name == "pendulum"
    assert torch.equal(to_unit(data.world.render(data.exogenous, data.labels)), data.x)
