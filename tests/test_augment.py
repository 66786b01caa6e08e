import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from causaldiff.augment import plan_balance, with_reconstructions
from causaldiff.cli import main
from causaldiff.data.folder import FolderDataset
from causaldiff.graph import CausalGraph

G = CausalGraph.from_dict({"age": {}, "lesion": {"kind": "binary", "parents": ["age"]}})


def test_balance_plan_counts_and_spreads_sources():
    lesion = torch.tensor([1.0] * 5 + [0.0] * 95)
    items = plan_balance({"age": torch.zeros(100), "lesion": lesion}, G, "lesion", 1, 0.5)
    assert len(items) == 90  # (5 + 90) / (100 + 90) = 0.5
    sources = [it["source"] for it in items]
    assert all(s >= 5 for s in sources) and len(set(sources)) == 90  # never a rare source, none used twice
    assert all(it["do"] == "lesion=1" for it in items)
    assert plan_balance({"age": torch.zeros(4), "lesion": torch.ones(4)}, G, "lesion", 1, 0.5) == []
    with pytest.raises(ValueError, match="needs a binary or categorical node"):
        plan_balance({"age": torch.zeros(4), "lesion": lesion[:4]}, G, "age", 1, 0.5)
    with pytest.raises(ValueError, match="target fraction"):
        plan_balance({"age": torch.zeros(4), "lesion": lesion[:4]}, G, "lesion", 1, 1.5)


@pytest.fixture(scope="module")
def brain_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("brain") / "data"
    main(["data", "make", "brain", "--n", "24", "--size", "32", "--seed", "2", "--out", str(root)])
    return root


AUG = ["augment", "--checkpoint", "brain32", "--balance", "lesion", "--target-fraction", "0.5", "--steps", "3",
       "--batch-size", "4"]


def test_augment_writes_plan_and_a_folder_fit_accepts(brain_folder, tmp_path):
    out = tmp_path / "aug"
    main([*AUG, "--input", str(brain_folder), "--out", str(out)])
    src = FolderDataset(brain_folder, size=32, channels=1)
    r = int((src.labels["lesion"] == 1).sum())
    expected = -(-(0.5 * 24 - r) // 0.5)
    ds = FolderDataset(out, size=32, channels=1)
    assert len(ds) == expected == len(json.loads((out / "manifest.json").read_text())["items"])
    assert torch.all(ds.labels["lesion"] == 1)
    header = (out / "labels.csv").read_text().splitlines()[0]
    assert header.endswith("source_file,intervention,counterfactual")
    assert not list(out.rglob("*.tmp"))
    with pytest.raises(SystemExit, match="holds a plan made with --steps = 3, this run asks for 4; rerun with the "
                       "same settings to resume"):
        main([*AUG[:-4], "--steps", "4", "--batch-size", "4", "--input", str(brain_folder), "--out", str(out)])


def test_pairs_add_one_reconstruction_per_source_with_its_own_labels(brain_folder, tmp_path):
    items = with_reconstructions([{"source": 3, "do": "lesion=1"}, {"source": 3, "do": "lesion=1"},
                                  {"source": 5, "do": "lesion=1"}])
    assert items[3:] == [{"source": 3, "do": ""}, {"source": 5, "do": ""}]  # one per distinct source
    out = tmp_path / "aug"
    main([*AUG, "--pairs", "--input", str(brain_folder), "--out", str(out)])
    src = FolderDataset(brain_folder, size=32, channels=1)
    ds = FolderDataset(out, size=32, channels=1)
    n_cf = len(plan_balance(src.labels, src.graph, "lesion", 1, 0.5))
    assert len(ds) == 2 * n_cf
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    recon = [i for i, r in enumerate(rows) if r["intervention"] == ""]
    assert len(recon) == n_cf and torch.all(ds.labels["lesion"][recon] == 0)
    names = [str(p) for p in src.files]
    for i in recon:  # a reconstruction carries its source's labels
        j = next(j for j, name in enumerate(names) if name.endswith(rows[i]["source_file"]))
        assert all(abs(float(ds.labels[k][i]) - float(src.labels[k][j])) < 1e-3 for k in src.labels)


def test_the_plan_records_the_whole_config_and_a_resume_under_another_setting_is_refused(brain_folder, tmp_path):
    from causaldiff.inference.config import CounterfactualConfig

    out = tmp_path / "aug"
    main([*AUG, "--guidance", "2", "--input", str(brain_folder), "--out", str(out)])
    plan = json.loads((out / "manifest.json").read_text())
    assert set(plan["config"]) == set(CounterfactualConfig.names()) - {"device"}  # every field that shapes an image
    assert plan["config"] | {"guidance": 0} == {"steps": 3, "guidance": 0, "depth": 0.75, "inversion": "residual",
                                                 "keep_unchanged": True, "seed": 0, "batch_size": 4,
                                                 "precision": "auto"}  # brain32's
    ds = FolderDataset(out, size=32, channels=1)
    assert len(ds) == len(plan["items"]) > 0 and torch.all(ds.labels["lesion"] == 1)
    for flags, said in ((["--no-keep-unchanged"], "--keep-unchanged = True, this run asks for False"),
                        (["--depth", "1"], "--depth = 0.75, this run asks for 1.0"),
                        ([], "--guidance = 2.0, this run asks for 1.0")):
        with pytest.raises(SystemExit, match=said):
            main([*AUG, *(["--guidance", "2"] if flags else []), *flags, "--input", str(brain_folder), "--out",
                  str(out)])
    main([*AUG, "--guidance", "2", "--input", str(brain_folder), "--out", str(out)])  # the same settings resume


def test_rerun_finishes_only_missing_items(brain_folder, tmp_path):
    out = tmp_path / "aug"
    main([*AUG, "--input", str(brain_folder), "--out", str(out)])
    items = sorted((out / "items").glob("*.json"))
    kept = {p.name: p.stat().st_mtime_ns for p in items[:5]}
    for p in items[5:]:  # as if interrupted after five items
        p.unlink()
        p.with_suffix(".png").unlink()
    (out / "labels.csv").unlink()
    main([*AUG, "--input", str(brain_folder), "--out", str(out)])
    assert {p.name: p.stat().st_mtime_ns for p in sorted((out / "items").glob("*.json"))[:5]} == kept
    assert len(list((out / "items").glob("*.png"))) == len(items)
    assert len((out / "labels.csv").read_text().splitlines()) == len(items) + 1


@pytest.mark.slow
def test_sigkill_then_rerun_leaves_nothing_missing_or_half_written(brain_folder, tmp_path):
    out = tmp_path / "aug"
    cmd = [sys.executable, "-m", "causaldiff.cli", *AUG[:-1], "1", "--input", str(brain_folder), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("items/*.json"))) < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n = len(json.loads((out / "manifest.json").read_text())["items"])
    if len(list(out.glob("items/*.json"))) < n:  # killed part-way (the usual case): no CSV claims completeness
        assert not (out / "labels.csv").exists()
    (out / "items" / ".000000.png.killed.tmp").write_bytes(b"half")  # as a kill during a write leaves one
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list((out / "items").glob("*.png"))) == len(list((out / "items").glob("*.json"))) == n
    assert not list(out.rglob(".*.tmp"))
    ds = FolderDataset(out, size=32, channels=1)
    assert len(ds) == n and all(ds[i]["x"].shape == (1, 32, 32) for i in range(n))


@pytest.mark.slow
def test_ddp_two_processes_split_the_plan(brain_folder, tmp_path):
    out = tmp_path / "aug"
    cmd = [sys.executable, "-m", "causaldiff.cli", *AUG, "--input", str(brain_folder), "--out", str(out),
           "--devices", "2", "--strategy", "ddp", "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    n = len(json.loads((out / "manifest.json").read_text())["items"])
    rows = (out / "labels.csv").read_text().splitlines()[1:]
    assert len(rows) == n == len({r.split(",")[0] for r in rows})  # one merged CSV, no duplicates


def test_outputs_keep_each_source_depth(brain_folder, tmp_path):
    """16-bit PNG in → 16-bit PNG out; a raw-intensity array in → float .npy out, in the source's range."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "mixed"
    root.mkdir()
    lines = (brain_folder / "labels.csv").read_text().splitlines()
    rows = [lines[0]]
    for i, line in enumerate(lines[1:3]):
        name, rest = line.split(",", 1)
        grey = np.asarray(Image.open(brain_folder / name), dtype=np.float32) / 255
        if i == 0:
            Image.fromarray((grey * 65535).astype(np.uint16)).save(root / "a16.png")
            rows.append("a16.png," + rest)
        else:
            np.save(root / "b.npy", 300 + 1700 * grey)  # raw intensities in [300, 2000]
            rows.append("b.npy," + rest)
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    (root / "graph.yaml").write_text((brain_folder / "graph.yaml").read_text())
    out = tmp_path / "aug"
    main(["augment", "--checkpoint", "brain32", "--do", "lesion=1", "--steps", "3", "--input", str(root),
          "--out", str(out)])
    files = [r.split(",")[0] for r in (out / "labels.csv").read_text().splitlines()[1:]]
    assert files == ["items/000000.png", "items/000001.npy"]
    with Image.open(out / files[0]) as im:
        assert im.mode == "I;16" and np.asarray(im).max() > 255
    arr = np.load(out / files[1])
    assert arr.shape == (32, 32) and arr.dtype == np.float32 and 300 <= arr.min() < arr.max() <= 2000
    assert len(FolderDataset(out, size=32, channels=1)) == 2


def test_predictor_reads_the_interventions_back(tiny_ckpt, tiny_predictor, tmp_path):
    main(["data", "make", "pendulum", "--n", "6", "--size", "16", "--out", str(tmp_path / "in")])
    out = tmp_path / "aug"
    cmd = ["augment", "--checkpoint", str(tiny_ckpt), "--input", str(tmp_path / "in"), "--do", "light_angle=100",
           "--steps", "3", "--out", str(out), "--predictor", str(tiny_predictor)]
    main(cmd)
    summary = json.loads((out / "read_back.json").read_text())
    assert list(summary) == ["light_angle"] and summary["light_angle"]["n"] == 6
    lines = (out / "labels.csv").read_text().splitlines()
    assert lines[0].endswith(",counterfactual,read_back_light_angle")
    readings = [float(r.split(",")[-1]) for r in lines[1:]]
    mae = sum(abs(v - 100) for v in readings) / 6
    assert summary["light_angle"]["mae"] == pytest.approx(mae, abs=1e-3)
    main(cmd)  # a rerun replaces the readings instead of adding a second column
    assert (out / "labels.csv").read_text().splitlines()[0].count("read_back_") == 1
    assert len(FolderDataset(out, size=16, channels=3)) == 6


def test_read_back_share_for_a_discrete_node(tmp_path):
    """Classes are compared exactly: the share of images whose predicted class is the intended one."""
    from causaldiff.augment import read_back
    from causaldiff.data.folder import write_folder

    g = CausalGraph.from_dict({"lesion": {"kind": "binary"}})
    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    write_folder(tmp_path, images, {"lesion": torch.ones(4)}, g,
                 extra={"intervention": ["lesion=1"] * 3 + [""], "counterfactual": [1] * 4})

    class Fixed:  # reads lesion=1 on the first two images only
        graph = g
        scale = torch.ones(1)

        def predict(self, x):
            return {"lesion": torch.tensor([1.0, 1.0, 0.0, 0.0])[: len(x)]}

        def check_graph(self, graph):
            assert graph is g

    assert read_back(tmp_path, Fixed(), g, 8, 1) == {"lesion": {"n": 3, "read_back_share": 0.6667}}
    rows = (tmp_path / "labels.csv").read_text().splitlines()
    assert [r.split(",")[-1] for r in rows[1:]] == ["1", "1", "0", ""]


def test_predictor_of_another_graph_is_refused_before_generating(brain_folder, tiny_predictor, tmp_path):
    with pytest.raises(SystemExit, match="predictor graph .* does not match the model's"):
        main([*AUG, "--input", str(brain_folder), "--out", str(tmp_path / "aug"), "--predictor", str(tiny_predictor)])
    assert not (tmp_path / "aug").exists()  # nothing planned or written
