import os

import numpy as np
import pytest
import torch
from PIL import Image

from causaldiff.cli import main
from causaldiff.data.datamodule import CausalDataModule
from causaldiff.data.folder import FolderDataset, load_image, read_image
from causaldiff.data.worlds import get_world
from causaldiff.inference.inputs import finding_masks
from causaldiff.io import encode_like

GRAPH = {"age": {}, "sex": {"kind": "binary"}, "size": {"parents": ["age"]}}


def make_folder(tmp_path, rows, header="file,age,sex,size", mode="L"):
    tmp_path.mkdir(exist_ok=True)
    for r in rows:
        name = r.split(",")[0]
        if name and not os.path.isabs(name) and ".." not in name and not (tmp_path / name).exists():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            Image.new(mode, (20, 24), 128 if mode == "L" else (255, 0, 0)[: len(mode)]).save(tmp_path / name)
    (tmp_path / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return tmp_path


def test_data_make_round_trips_labels_exactly(tmp_path):
    out = tmp_path / "pend"
    main(["data", "make", "pendulum", "--n", "200", "--size", "32", "--out", str(out)])
    assert len(list(out.glob("*.png"))) == 200
    assert (out / "graph.yaml").is_file() and (out / "labels.csv").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    ds = FolderDataset(out, size=32, channels=3)
    w = get_world("pendulum")
    exo, labels = w.sample(200, seed=0)
    for k in labels:
        assert torch.equal(ds.labels[k], labels[k])
    img = w.render(exo, labels)
    assert torch.equal(((ds[7]["x"] + 1) * 127.5).round().to(torch.uint8), img[7])
    with pytest.raises(SystemExit, match="not empty"):
        main(["data", "make", "pendulum", "--n", "2", "--out", str(out)])
    assert len(list(out.glob("*.png"))) == 200  # nothing lost


def test_data_make_writes_each_findings_mask_and_takes_a_worlds_options(tmp_path):
    areas = {}
    for scale in (1, 2):
        out = tmp_path / f"brain{scale}"
        main(["data", "make", "brain", "--n", "300", "--out", str(out), "--option", f"lesion_scale={scale}"])
        ds = FolderDataset(out, size=32, channels=1, focus="lesion")
        lesion = ds.labels["lesion"] == 1
        assert 5 <= lesion.sum() <= 40  # the world's ~5 %
        masks = torch.stack([ds[i]["focus"] for i in range(len(ds))])
        area = masks.flatten(1).sum(1)
        assert torch.all(area[lesion] > 0) and torch.all(area[~lesion] == 0)  # a segmentation where the lesion is
        areas[scale] = area[lesion].mean().item()
        dm = CausalDataModule(folder=str(out), folder_channels=1)  # what a site bank is fitted from (no focus)
        torch.testing.assert_close(finding_masks(dm, list(range(len(ds))))["lesion"], masks)
    assert areas[2] > 2.5 * areas[1]  # twice the radius: about four times the area
    assert finding_masks(CausalDataModule(world="brain", n=8), [0, 1]) == {}  # a world has no segmentations
    with pytest.raises(SystemExit, match="the brain world has no option 'lesion_size' \\(its options: lesion_scale\\)"):
        main(["data", "make", "brain", "--n", "2", "--out", str(tmp_path / "x"), "--option", "lesion_size=2"])
    with pytest.raises(SystemExit, match="--option 'lesion_scale': expected KEY=NUMBER"):
        main(["data", "make", "brain", "--n", "2", "--out", str(tmp_path / "x"), "--option", "lesion_scale"])
    assert not (tmp_path / "x").exists()


def test_missing_cells_are_masked(tmp_path):
    root = make_folder(tmp_path / "d", ["a.png,50,1,3.5", "b.png,,0,", "c.png,60,1,2"])
    ds = FolderDataset(root, GRAPH, size=16, channels=1)
    item = ds[1]
    assert item["x"].shape == (1, 16, 16)
    assert item["mask"]["age"].item() is False and item["mask"]["sex"].item() is True
    assert item["labels"]["age"].item() == 0.0  # filled, masked
    assert torch.isnan(ds.labels["size"][1])


@pytest.mark.parametrize("rows, message", [
    (["/etc/passwd,1,0,1"], "absolute path"),
    (["../outside.png,1,0,1"], "outside the data root"),
    (["a.png,1,2,1"], "not a class of binary node"),
    (["a.png,x,0,1"], "'x' is not a number"),
    (["a.png,inf,0,1"], "infinite"),
])
def test_bad_csv_rows(tmp_path, rows, message):
    root = make_folder(tmp_path / "d", rows)
    with pytest.raises(ValueError, match=message):
        FolderDataset(root, GRAPH, size=16, channels=1)


def test_missing_column_and_file_and_symlink_escape(tmp_path):
    root = make_folder(tmp_path / "d", ["a.png,1,0"], header="file,age,sex")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['size'\]"):
        FolderDataset(root, GRAPH)
    root = make_folder(tmp_path / "e", ["a.png,1,0,1"])
    (root / "labels.csv").write_text("file,age,sex,size\nnope.png,1,0,1\n")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        FolderDataset(root, GRAPH)
    outside = make_folder(tmp_path / "outside", ["o.png,1,0,1"])
    root = make_folder(tmp_path / "f", ["a.png,1,0,1"])
    os.symlink(outside / "o.png", root / "link.png")
    (root / "labels.csv").write_text("file,age,sex,size\nlink.png,1,0,1\n")
    with pytest.raises(ValueError, match="outside the data root"):
        FolderDataset(root, GRAPH)


def test_corrupt_image_is_named(tmp_path):
    root = make_folder(tmp_path / "d", ["a.png,1,0,1"])
    (root / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    ds = FolderDataset(root, GRAPH, size=16, channels=1)
    with pytest.raises(ValueError, match="unreadable image .*a.png"):
        ds[0]


def test_channel_and_bit_depth_conversion(tmp_path):
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (8, 8), (255, 0, 0, 255)).save(rgba)
    g = load_image(rgba, 1, 8)
    assert g.shape == (1, 8, 8) and torch.allclose(g, torch.full_like(g, 0.299 * 2 - 1), atol=1e-5)
    grey = tmp_path / "g16.png"
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(grey)
    x = load_image(grey, 3, 4)
    assert x.shape == (3, 4, 4) and torch.allclose(x, torch.ones_like(x))


def test_datamodule_world_and_folder(tmp_path):
    dm = CausalDataModule(world="brain", n=100, seed=1, batch_size=8)
    assert sum(len(v) for v in dm.splits.values()) == 100 and len(dm.splits["train"]) == 80
    assert set(dm.splits["train"].tolist()).isdisjoint(dm.splits["val"].tolist())
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (8, 1, 32, 32) and batch["x"].min() >= -1 and batch["x"].max() <= 1
    assert set(batch["labels"]) == set(dm.graph.order) and batch["mask"]["age"].dtype == torch.bool
    mean, std = dm.label_stats["age"]
    train_age = dm.train_labels()["age"]
    assert mean == pytest.approx(train_age.mean().item()) and std == pytest.approx(train_age.std(unbiased=False).item())
    assert dm.label_stats["sex"] == [0.0, 1.0]
    root = make_folder(tmp_path / "d", [f"{i}.png,{i},{i % 2},{i / 2}" for i in range(10)])
    dm2 = CausalDataModule(folder=str(root), folder_graph=GRAPH, folder_channels=1, size=16, batch_size=4)
    assert dm2.label_stats["age"][0] == pytest.approx(dm2.train_labels()["age"].mean().item())
    assert next(iter(dm2.val_dataloader()))["x"].shape[1:] == (1, 16, 16)
    with pytest.raises(ValueError, match="exactly one of"):
        CausalDataModule()
    with pytest.raises(ValueError, match="no training items"):
        _ = CausalDataModule(folder=str(make_folder(tmp_path / "one", ["a.png,1,0,1"])), folder_graph=GRAPH).splits


def test_corrupt_and_empty_csv_are_named(tmp_path):
    root = make_folder(tmp_path / "d", ["a.png,1,0,1"])
    (root / "labels.csv").write_bytes(b"\xff\xfe\x00garbage\x81\x82")
    with pytest.raises(ValueError, match="labels.csv: not a readable CSV"):
        FolderDataset(root, GRAPH)
    (root / "labels.csv").write_text("file,age,sex,size\n")
    with pytest.raises(ValueError, match="labels.csv: no rows"):
        FolderDataset(root, GRAPH)


def test_npy_inputs_are_normalised_per_image(tmp_path):
    arr = np.linspace(100, 4000, 64, dtype=np.float32).reshape(8, 8)  # e.g. raw MRI intensities
    np.save(tmp_path / "slice.npy", arr)
    x = load_image(tmp_path / "slice.npy", 1, 8)
    assert x.shape == (1, 8, 8) and x.min() == -1 and x.max() == 1
    np.save(tmp_path / "bad.npy", np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="bad.npy: expected a"):
        load_image(tmp_path / "bad.npy", 1, 8)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="unreadable array"):
        load_image(tmp_path / "obj.npy", 1, 8)


def test_read_image_reports_the_source_depth(tmp_path):
    Image.fromarray(np.full((8, 8), 1000, dtype=np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(np.full((8, 8), 7, dtype=np.uint8)).save(tmp_path / "g8.png")
    np.save(tmp_path / "a.npy", np.linspace(-5, 20, 64, dtype=np.float32).reshape(8, 8))
    x16, src16 = read_image(tmp_path / "g16.png", 1, 8)
    assert src16 == {"depth": 16} and torch.allclose(x16, torch.full_like(x16, 1000 / 65535 * 2 - 1))
    assert read_image(tmp_path / "g8.png", 1, 8)[1] == {"depth": 8}
    assert read_image(tmp_path / "a.npy", 1, 8)[1] == {"depth": "float", "range": [-5.0, 20.0]}


def _dicom(path, pixels: np.ndarray, intercept: float):
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_nifti_and_dicom_slices(tmp_path):
    import nibabel

    vol = np.linspace(0, 500, 64, dtype=np.float32).reshape(8, 8, 1)  # one slice of a volume
    nibabel.save(nibabel.Nifti1Image(vol, np.eye(4)), tmp_path / "s.nii.gz")
    x, src = read_image(tmp_path / "s.nii.gz", 1, 8)
    assert src == {"depth": "float", "range": [0.0, 500.0], "nifti": str(tmp_path / "s.nii.gz")}
    assert torch.allclose(x[0], torch.from_numpy(vol[..., 0] / 250 - 1), atol=1e-6)
    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4)), tmp_path / "v.nii")
    with pytest.raises(ValueError, match=r"v.nii: expected one 2-D slice, got an array of shape \(4, 4, 3\)"):
        load_image(tmp_path / "v.nii", 1, 8)

    stored = np.arange(64).reshape(8, 8) * 50  # 12-bit stored values
    _dicom(tmp_path / "ct.dcm", stored, intercept=-1024)
    x, src = read_image(tmp_path / "ct.dcm", 1, 8)
    assert src == {"depth": "float", "range": [-1024.0, 63 * 50 - 1024.0]}  # Hounsfield units
    assert torch.allclose(x[0], torch.from_numpy(stored / (63 * 50) * 2 - 1).float(), atol=1e-6)
    (tmp_path / "bad.dcm").write_bytes(b"not a dicom file")
    with pytest.raises(ValueError, match="unreadable pydicom file .*bad.dcm"):
        load_image(tmp_path / "bad.dcm", 1, 8)


def test_nifti_round_trip_keeps_affine_and_intensities(tmp_path):
    """A NIfTI slice in, a NIfTI out: the source's affine, singleton axes and intensity range come back."""
    import nibabel

    affine = np.array([[0.9, 0, 0, -40.0], [0, 1.1, 0, 12.0], [0, 0, 3.0, 7.5], [0, 0, 0, 1]])
    vol = np.linspace(-100, 900, 64, dtype=np.float32).reshape(8, 8, 1)
    nibabel.save(nibabel.Nifti1Image(vol, affine), tmp_path / "s.nii.gz")
    x, src = read_image(tmp_path / "s.nii.gz", 1, 8)
    assert src["nifti"] == str(tmp_path / "s.nii.gz")
    suffix, data = encode_like(((x + 1) / 2).numpy(), src)
    assert suffix == ".nii.gz"
    (tmp_path / "out.nii.gz").write_bytes(data)
    out = nibabel.load(tmp_path / "out.nii.gz")
    assert out.shape == (8, 8, 1) and np.allclose(out.affine, affine)
    assert np.allclose(out.get_fdata(), vol, atol=1e-3)
    x_back, _ = read_image(tmp_path / "out.nii.gz", 1, 8)  # the loader reads it like any input
    assert torch.allclose(x_back, x, atol=1e-5)

    big = np.zeros((16, 16, 1), np.float32)  # resampled to the model's 8 x 8: voxels twice as large, same world box
    nibabel.save(nibabel.Nifti1Image(big, affine), tmp_path / "big.nii")
    x, src = read_image(tmp_path / "big.nii", 1, 8)
    (tmp_path / "small.nii.gz").write_bytes(encode_like(((x + 1) / 2).numpy(), src)[1])
    small = nibabel.load(tmp_path / "small.nii.gz").affine
    assert np.allclose(small[:3, :2], 2 * affine[:3, :2]) and np.allclose(small[:3, 2], affine[:3, 2])
    edge = np.array([-0.5, -0.5, 0, 1])  # the outer corner of voxel (0, 0), in voxel units
    assert np.allclose(small @ edge, affine @ edge)


def test_missing_medical_extra_is_named(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_nibabel(name, *args, **kwargs):
        if name == "nibabel":
            raise ImportError("No module named 'nibabel'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nibabel)
    (tmp_path / "s.nii").write_bytes(b"")
    with pytest.raises(ValueError, match=r"needs nibabel; install it with: pip install causaldiff\[medical\]"):
        load_image(tmp_path / "s.nii", 1, 8)


def test_balance_draws_each_class_equally_often():
    dm = CausalDataModule(world="brain", n=400, seed=1, batch_size=50, balance="lesion")
    share = dm.train_labels()["lesion"].mean().item()
    assert share < 0.15  # rare in the data
    drawn = torch.cat([b["labels"]["lesion"] for _ in range(5) for b in dm.train_dataloader()])
    assert abs(drawn.mean().item() - 0.5) < 0.06, drawn.mean()  # 1,600 draws: 3.5 sigma
    assert dm.label_stats == CausalDataModule(world="brain", n=400, seed=1).label_stats  # fitted on the data as is
    with pytest.raises(ValueError, match="balance: node 'age' is continuous"):
        CausalDataModule(world="brain", n=50, balance="age").train_dataloader()
    with pytest.raises(ValueError, match="balance: unknown node 'lesions'"):
        CausalDataModule(world="brain", n=50, balance="lesions").train_dataloader()


def test_randomised_world_data_and_its_refusals(tmp_path):
    dm = CausalDataModule(world="brain", n=400, seed=1, randomise=["lesion"])
    assert 0.35 < dm.train_labels()["lesion"].mean().item() < 0.65  # observed: about 5 %
    with pytest.raises(ValueError, match="randomise, twins and world_options need a world"):
        CausalDataModule(folder=str(tmp_path), randomise=["lesion"])


def test_twins_carry_the_flipped_true_counterfactual_and_train_an_invariant_predictor():
    from causaldiff.evaluation.predictor import PredictorModule

    dm = CausalDataModule(world="brain", n=64, seed=2, batch_size=16, randomise=["lesion"], twins="lesion")
    item = dm.dataset[0]
    assert item["twin"]["labels"]["lesion"] == 1 - item["labels"]["lesion"]
    assert all(item["twin"]["labels"][k] == item["labels"][k] for k in ("sex", "age", "brain_volume"))
    changed = (item["twin"]["x"] - item["x"]).abs() > 1e-6
    assert 0 < changed.sum() < 0.1 * changed.numel()  # a lesion's few pixels, nothing else
    module = PredictorModule(dm.graph_spec, dm.label_stats, dm.channels, predictor_widths=(8, 8, 8))
    batch = next(iter(dm.train_dataloader()))
    raw = module.predictor.raw(batch["x"])
    terms = module._with_twins(raw, batch, module.predictor.loss(batch["x"], batch["labels"], batch["mask"], raw),
                               "val")
    assert terms["invariance"] > 0 and torch.isfinite(terms["loss"])
    assert set(terms) >= {"lesion", "brain_volume", "invariance", "loss"}
    with pytest.raises(ValueError, match="twins: 'age' is not a binary node of brain"):
        _ = CausalDataModule(world="brain", n=16, twins="age").dataset


def test_focus_marks_the_pixels_the_flipped_node_changes_and_nothing_else():
    dm = CausalDataModule(world="brain", n=64, seed=3, randomise=["lesion"], twins="lesion", focus="lesion")
    ds = dm.dataset
    changed = (ds.images.int() - ds.twins[1].int()).abs()
    focus = ds.focus
    assert focus.shape == (64, 1, 32, 32) and focus.dtype == torch.bool
    assert (changed[~focus] <= 4).all() and (changed[focus] > 4).all()  # FOCUS_LEVELS grey levels
    counts = focus.flatten(1).sum(1)
    assert 10 <= counts.min() and counts.max() <= 30  # the lesion's site, lesion or not: a blob of ~18 pixels
    item = ds[0]
    assert item["focus"].shape == (1, 32, 32) and set(item["focus"].unique().tolist()) == {0.0, 1.0}
    alone = CausalDataModule(world="brain", n=64, seed=3, randomise=["lesion"], focus="lesion").dataset
    assert torch.equal(alone.focus, focus) and alone.twins is None  # the same mask without carrying the twins
    with pytest.raises(ValueError, match="focus: 'age' is not a binary node of brain"):
        _ = CausalDataModule(world="brain", n=16, focus="age").dataset


def test_focus_auto_marks_every_local_findings_pixels_where_the_data_has_them(tmp_path):
    world = CausalDataModule(world="strokes", n=48, seed=1, focus="auto").dataset
    assert world.focus_nodes == ("swelling", "fracture")  # the world's local nodes, in graph order
    one = {n: CausalDataModule(world="strokes", n=48, seed=1, focus=n).dataset.focus for n in world.focus_nodes}
    assert torch.equal(world.focus, one["swelling"] | one["fracture"]) and one["swelling"].any()
    assert CausalDataModule(world="pendulum", n=8, focus="auto").dataset.focus is None  # no local node: no focus
    out = tmp_path / "strokes"
    main(["data", "make", "strokes", "--n", "60", "--out", str(out)])
    auto = FolderDataset(out, size=32, channels=1, focus="auto")
    assert auto.focus_nodes == ("swelling", "fracture")
    each = {n: FolderDataset(out, size=32, channels=1, focus=n) for n in auto.focus_nodes}
    union = torch.stack([auto[i]["focus"] for i in range(60)])
    parts = [torch.stack([each[n][i]["focus"] for i in range(60)]) for n in auto.focus_nodes]
    assert torch.equal(union, parts[0].maximum(parts[1])) and all(p.any() for p in parts)
    plain = make_folder(tmp_path / "plain", ["a.png,50,1,3.5"])
    none = FolderDataset(plain, {**GRAPH, "sex": {"kind": "binary", "local": True}}, focus="auto")
    assert none.focus_nodes == () and "focus" not in none[0]  # a local node without a mask column: no focus


def test_a_folder_focus_reads_each_rows_mask_and_refuses_what_it_cannot_read(tmp_path):
    root = make_folder(tmp_path / "d", ["a.png,50,1,3.5,a_mask.png", "b.png,60,0,2,"],
                       header="file,age,sex,size,sex_mask")
    mask = np.zeros((24, 20), np.uint8)
    mask[4:8, 10:14] = 255  # a 4 x 4 finding in a 20 x 24 image
    Image.fromarray(mask).save(root / "a_mask.png")
    dm = CausalDataModule(folder=str(root), folder_graph=GRAPH, size=24, folder_channels=1, focus="sex",
                          val_fraction=0, test_fraction=0)
    a, b = dm.dataset[0]["focus"], dm.dataset[1]["focus"]
    assert a.shape == (1, 24, 24) and a.sum().item() >= 16 and a[0, :2].sum() == 0  # resized, still local
    assert not b.any()  # an empty cell: no finding
    seg = np.zeros((24, 20), np.float32)
    seg[4:8, 10:14], seg[10:12, 2:4] = 1.0, 2.0  # a multi-class segmentation: every label counts, raw
    np.save(root / "a_mask.npy", seg)
    (root / "labels.csv").write_text("file,age,sex,size,sex_mask\na.png,50,1,3.5,a_mask.npy\n")
    c = FolderDataset(root, GRAPH, size=24, channels=1, focus="sex")[0]["focus"]
    assert set(c.unique().tolist()) == {0.0, 1.0} and 20 <= c.sum().item() <= 40  # 16 + 4 pixels, widened a little
    with pytest.raises(ValueError, match="focus: 'age' is not a binary node of the folder's graph"):
        FolderDataset(root, GRAPH, focus="age")
    plain = make_folder(tmp_path / "plain", ["a.png,50,1,3.5"])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['sex_mask'\]"):
        FolderDataset(plain, GRAPH, focus="sex")
    (root / "labels.csv").write_text("file,age,sex,size,sex_mask\na.png,50,1,3.5,gone.png\n")
    with pytest.raises(FileNotFoundError, match=r"labels.csv, row 2: sex_mask image not found: .*gone.png"):
        FolderDataset(root, GRAPH, focus="sex")


def test_real_folders_exif_palette_la_sixteen_bit_and_odd_shapes(tmp_path):
    """What real folders hold reads as the image a viewer shows: EXIF rotation applied, palette and LA PNGs,
    16-bit greyscale kept, and a non-square image padded to a square (black, centred), never stretched or cropped."""
    root = tmp_path / "d"
    root.mkdir()
    tall = np.zeros((40, 20), dtype=np.uint8)
    tall[:, :] = 255  # a white portrait image: after padding, white in the middle, black bars left and right
    Image.fromarray(tall).save(root / "tall.png")
    x = load_image(root / "tall.png", 1, 16)
    assert x.shape == (1, 16, 16)
    assert x[0, :, 6:10].min() > 0.9 and x[0, :, :2].max() < -0.9 and x[0, :, -2:].max() < -0.9
    wide = np.zeros((8, 32, 3), dtype=np.uint8)
    wide[:, :16] = (255, 0, 0)
    Image.fromarray(wide).rotate(90, expand=True).save(root / "rotated.jpg", exif=_exif_rotated(6), quality=100)
    upright = load_image(root / "rotated.jpg", 3, 32)  # stored rotated, flagged "rotate 90° clockwise to view"
    assert upright[0, 12:20, :16].mean() > 0.8 and upright[0, 12:20, 16:].mean() < -0.5  # red on the left again
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([200, 200, 200] + [0] * 765)
    pal.save(root / "palette.png")
    Image.fromarray(np.full((16, 16), 100, dtype=np.uint8)).convert("LA").save(root / "grey_alpha.png")
    deep = np.full((16, 16), 40000, dtype=np.uint16)
    Image.fromarray(deep).save(root / "deep.png")
    torch.testing.assert_close(load_image(root / "palette.png", 1, 16), torch.full((1, 16, 16), 200 / 127.5 - 1),
                               atol=0.02, rtol=0)
    torch.testing.assert_close(load_image(root / "grey_alpha.png", 1, 16), torch.full((1, 16, 16), 100 / 127.5 - 1),
                               atol=0.02, rtol=0)
    x16, source = read_image(root / "deep.png", 1, 16)
    assert source == {"depth": 16} and abs(x16.mean().item() - (40000 / 65535 * 2 - 1)) < 1e-4


def _exif_rotated(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def test_csv_with_bom_quotes_extra_columns_and_the_rows_it_refuses(tmp_path):
    root = make_folder(tmp_path / "d", ["a.png,1,0,1", "b.png,2,1,2"])
    text = '\ufefffile,age,"sex",size,notes\n"a.png",1,0,1,"first, quoted"\nb.png,2,1,2,\n'
    (root / "labels.csv").write_text(text, encoding="utf-8")
    ds = FolderDataset(root, GRAPH)  # the byte-order mark, quotes and an extra column are read as a user means
    assert [f.name for f in ds.files] == ["a.png", "b.png"] and ds.labels["age"].tolist() == [1.0, 2.0]
    (root / "labels.csv").write_text("file,age,sex,size\na.png,1,0,1\nb.png,2,1,2\na.png,3,0,1\n")
    with pytest.raises(ValueError, match=r"labels.csv, rows 2 and 4 name the same file 'a.png'"):
        FolderDataset(root, GRAPH)
    (root / "labels.csv").write_text("file,age,sex,size\na.png,1,0,1\ngone.png,2,1,2\n")
    with pytest.raises(FileNotFoundError, match=r"labels.csv, row 3: image not found: .*gone.png"):
        FolderDataset(root, GRAPH)


def test_the_predictor_weighs_each_class_of_a_discrete_node_as_much_as_the_others():
    """A rare finding (the brain world's ~5 % lesions) gets class weights N / (K n_k): its few images weigh as much
    as all the others, so the predictor learns to read it; a balanced node's weights stay near 1."""
    import pytorch_lightning as pl

    from causaldiff.evaluation.predictor import PredictorModule

    dm = CausalDataModule(world="brain", n=400, seed=2, batch_size=32)
    module = PredictorModule(dm.graph_spec, dm.label_stats, dm.channels, predictor_widths=(8, 8, 8))
    pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0).fit(module, datamodule=dm)
    y = dm.train_labels()["lesion"].long()
    counts = torch.bincount(y, minlength=2).float()
    w = module.class_weights["lesion"]
    assert counts[1] < 0.15 * len(y) and w[1] > 3 * w[0]  # the rare class weighs more
    torch.testing.assert_close((counts * w).sum(), torch.tensor(float(len(y))))  # N in all: the loss's scale kept
    torch.testing.assert_close(w * counts, torch.full((2,), len(y) / 2.0))  # each class weighs half
    assert (module.class_weights["sex"] - 1).abs().max() < 0.3
    batch = next(iter(dm.train_dataloader()))
    plain = module.predictor.loss(batch["x"], batch["labels"], batch["mask"])["lesion"]
    weighted = module.predictor.loss(batch["x"], batch["labels"], batch["mask"], class_weights=module.class_weights)
    assert not torch.isclose(plain, weighted["lesion"])


def test_shown_replaces_the_graphs_flags_and_names_an_unknown_node():
    assert [n for n, node in CausalDataModule(world="brain", n=16).graph.nodes.items() if not node.shown] == \
        ["sex", "age"]  # the world's own declaration: its renderer draws neither
    every = CausalDataModule(world="brain", n=16, shown=["sex", "age", "brain_volume", "ventricle_volume", "lesion"])
    assert all(node.shown for node in every.graph.nodes.values()) and "shown" not in str(every.graph_spec)
    with pytest.raises(ValueError, match="shown names unknown node 'height'"):
        _ = CausalDataModule(world="brain", n=16, shown=["height"]).graph
    with pytest.raises(ValueError, match="'lesion': .*a local node is shown"):
        _ = CausalDataModule(world="brain", n=16, shown=["age"]).graph
