import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

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
    main(["demo", "--out", str(tmp_path / "demo")])  # default 20 steps: a v model's inversion needs them (8: L1 9.1)
    out = capsys.readouterr().out
    assert "demo done" in out and (tmp_path / "demo" / "grid.png").is_file()
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["variants"]["causaldiff"]["true_cf_image_l1"] < report["variants"]["no-abduction"]["true_cf_image_l1"]
    assert report["references"]["identity"]["composition"]["1"] == 0.0  # the "do nothing" row is in the report


@pytest.mark.slow
def test_demo_trains_from_a_non_editable_install(tmp_path):
    """`pip install .` (a wheel, no repository around it), then `causaldiff demo --train` and a staged
    `causaldiff fit --config brain32`: the configs travel with the package."""
    root = Path(__file__).parent.parent
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    # the dependencies come from the environment running the tests (a virtual one too, whose packages
    # --system-site-packages does not see): its site-packages, listed after the new venv's own
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([str(venv / "bin" / "python"), "-c", ask], check=True, capture_output=True,
                          text=True).stdout.strip()
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site) / "parent_environment.pth").write_text("\n".join(paths) + "\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
    src = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info next to the sources, not in the repo
    shutil.copytree(root, src, symlinks=True, ignore=shutil.ignore_patterns(".git", "build", "runs", "*.egg-info",
                                                                             "__pycache__", ".pytest_cache"))
    subprocess.run([*pip, str(src)], check=True, cwd=tmp_path, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "2"}
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import causaldiff; print(causaldiff.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True, env=env).stdout
    assert str(venv) in where  # the installed copy, not the repository
    run = subprocess.run([str(venv / "bin" / "causaldiff"), "demo", "--train", "--max-steps", "5", "--report-n", "0",
                          "--steps", "2", "--out", "demo"], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    ckpt = torch.load(tmp_path / "demo" / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 5
    assert (tmp_path / "demo" / "grid.png").is_file()
    assert "| *identity* |" in (tmp_path / "demo" / "report.md").read_text()
    # the shipped brain32 recipe, its stages shortened: the staged config travels with the package and runs
    stages = "[{steps: 2, prediction: eps}, {steps: 2, prediction: v, focus_weight: 20}]"
    run = subprocess.run([str(venv / "bin" / "causaldiff"), "fit", "--config", "brain32", f"--model.stages={stages}",
                          "--trainer.max_steps=4", "--data.n=64", "--report.n=0", "--trainer.default_root_dir=brain",
                          "--trainer.enable_progress_bar=false"], cwd=tmp_path, capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    ckpt = torch.load(tmp_path / "brain" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["hyper_parameters"]["prediction"] == "v"
    assert "step 2: stage 2 of 2, prediction=v" in run.stdout
