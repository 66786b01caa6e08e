"""The quality report a fit ends with: every section, a verdict per node, one grid per node, from the evaluation."""

import json

import pytest

from causaldiff.data.worlds import get_world
from causaldiff.evaluation.quality_report import drawn_ancestors, focused, verdict


def test_the_fit_writes_a_report_with_every_section(tiny_run):
    report_dir = tiny_run / "report"
    report = json.loads((report_dir / "report.json").read_text())
    nodes = report["evaluation"]["meta"]["nodes"]
    assert set(report["effect_gain"]) == set(nodes) == set(report["swap"]["fresh"]) == set(report["swap_reference"])
    assert set(report["swap"]) == {"fresh", "inverted"} and report["world"] == "pendulum"
    for key in ("effect_gain_mean", "effect_gain_descendants", "true_cf_l1_ratio", "composition@1", "reversibility@1"):
        assert key in report, key
    assert report["true_cf_l1_ratio"] > 0 and report["composition@1"] >= 0
    assert report["effect_gain"] == report["evaluation"]["gains"]["causaldiff"]["effect_gain"]  # the Evaluator's
    assert [v.split(")")[0] for v in report["verdicts"]] == [f"do({n}" for n in nodes]
    for node in nodes:
        assert (report_dir / f"grid_{node}.png").is_file() and (report_dir / f"grid_{node}.csv").is_file()
    md = (report_dir / "report.md").read_text()
    assert all(v in md for v in report["verdicts"]) and "reference (the truth)" in md
    assert (report_dir / "predictor.ckpt").is_file()  # fitted on the training split, kept for the next report
    assert set(report["reading"]) == set(nodes) and report["reading_n"] >= report["n"]  # the whole test split
    assert all(v is None or v <= 1 for v in report["reading"].values()) and "the predictor reads it |" in md


def test_reading_is_balanced_accuracy_for_classes_and_r2_for_values(monkeypatch):
    import torch

    from causaldiff.evaluation.predictor import AntiCausalPredictor

    graph = {"sex": {"kind": "binary"}, "age": {"kind": "continuous", "range": [0, 10]}}
    predictor = AntiCausalPredictor(graph, channels=1, widths=(8,))
    age = torch.tensor([1.0, 2.0, 3.0, 4.0])
    flat = age.mean().expand(4)
    monkeypatch.setattr(predictor, "predict", lambda x: {"sex": torch.tensor([0, 0, 1, 1]), "age": flat})
    labels = {"sex": torch.tensor([0.0, 1.0, 1.0, 1.0]), "age": age}
    reading = predictor.reading(torch.zeros(4, 1, 8, 8), labels)
    assert reading["sex"] == pytest.approx((1 + 2 / 3) / 2) and reading["age"] == pytest.approx(0.0)  # recall per class
    monkeypatch.setattr(predictor, "predict", lambda x: {"sex": torch.tensor([1, 1, 1, 1]), "age": age})
    reading = predictor.reading(torch.zeros(4, 1, 8, 8), {**labels, "sex": torch.tensor([1.0, 1, float("nan"), 1])})
    assert reading == {"sex": None, "age": pytest.approx(1.0)}  # one class present: not measured


def test_choosing_follows_the_rule_and_stores_the_settings_in_the_checkpoint(tiny_run, tmp_path):
    import shutil

    import torch

    from causaldiff.checkpoint import recommended_settings
    from causaldiff.cli import main
    from causaldiff.evaluation.choose import CANDIDATES, GAIN_TIE, MEAN_FLOOR, NODE_FLOOR, choose, settings

    ckpt = tmp_path / "last.ckpt"
    shutil.copy(tiny_run / "checkpoints" / "last.ckpt", ckpt)
    main(["report", "--checkpoint", str(ckpt), "--predictor", str(tiny_run / "report" / "predictor.ckpt"), "--n", "16",
          "--steps", "4", "--choose", "--out", str(tmp_path / "r")])
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    choice = report["choice"]
    assert [settings(r) for r in choice["candidates"]] == CANDIDATES and choice["items"] == "the next held-out items"
    assert choice["chosen"] == settings(choose(choice["candidates"]))
    assert recommended_settings(ckpt) == choice["chosen"]  # stored in the file
    assert {k: report["config"][k] for k in choice["chosen"]} == choice["chosen"]  # the report is at them
    assert torch.load(ckpt, weights_only=True)["global_step"] == 300  # the rest intact
    with pytest.raises(SystemExit, match="choosing settings writes them into the checkpoint: give its file"):
        main(["report", "--checkpoint", "pendulum32", "--n", "16", "--steps", "2", "--choose", "--out",
              str(tmp_path / "s")])
    md = (tmp_path / "r" / "report.md").read_text()
    assert f"Settings chosen on {choice['n']} of the next held-out items" in md and 0 < choice["n"] <= 16
    # the rule: the targets met (every gain >= 0.8, mean >= 0.9) first, then the lowest true-CF L1; else a lowest gain
    # within 0.03 of the highest
    rows = [{"lowest_gain": 0.95, "effect_gain_mean": 0.97, "true_cf_l1_ratio": 0.6, "input_l1": 1},
            {"lowest_gain": 0.82, "effect_gain_mean": 0.95, "true_cf_l1_ratio": 0.4, "input_l1": 2},
            {"lowest_gain": 0.81, "effect_gain_mean": 0.85, "true_cf_l1_ratio": 0.3, "input_l1": 3},
            {"lowest_gain": 0.5, "effect_gain_mean": 0.9, "true_cf_l1_ratio": 0.1, "input_l1": 0}]
    assert choose(rows) is rows[1] and (NODE_FLOOR, MEAN_FLOOR) == (0.8, 0.9)
    assert choose([{**r, "true_cf_l1_ratio": None} for r in rows])["input_l1"] == 1  # no truth: the smallest change
    assert choose([{**r, "lowest_gain": r["lowest_gain"] - 0.5} for r in rows])["lowest_gain"] == pytest.approx(0.45)
    none_meet = [{**r, "lowest_gain": 0.76 - i / 50} for i, r in enumerate(rows)]  # 0.76, 0.74, 0.72, 0.70
    assert choose(none_meet) is none_meet[1]  # lowest gains within 0.03 of the highest tie; then the lowest L1
    assert GAIN_TIE == 0.03 and choose([{**r, "true_cf_l1_ratio": None} for r in none_meet])["input_l1"] == 1


def test_report_command_reuses_the_predictor_and_writes_where_told(tiny_run, tmp_path, capsys):
    from causaldiff.cli import main

    predictor = tiny_run / "report" / "predictor.ckpt"
    before = predictor.stat().st_mtime_ns
    main(["report", "--checkpoint", str(tiny_run / "checkpoints" / "last.ckpt"), "--predictor", str(predictor),
          "--n", "12", "--steps", "3", "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert "mean effect gain" in out and "do(light_angle)" in out
    assert json.loads((tmp_path / "r" / "report.json").read_text())["n"] == 12
    assert predictor.stat().st_mtime_ns == before and not (tmp_path / "r" / "predictor.ckpt").exists()


@pytest.mark.parametrize("gain,words", [(0.93, "do(age) shows: gain 0.93"), (0.6, "shows weakly: gain 0.60"),
                                        (0.12, "does not show: gain 0.12 — train longer"),
                                        (None, "not measured")])
def test_a_verdict_says_in_plain_words_whether_an_intervention_shows(gain, words):
    assert words in verdict("age", gain)
    assert ("lesion_mask" in verdict("lesion", 0.1, local=True)) and "focus" not in verdict("age", 0.1)
    assert "weighed more in training already" in verdict("lesion", 0.1, True, focused=True)
    assert "lesion_mask" not in verdict("lesion", 0.1, True, focused=True)
    doubt = "uncertain: the predictor reads held-out lesion labels at 0.64 only"
    assert doubt in verdict("lesion", 0.9, True, True, 0.64) and doubt in verdict("lesion", 0.1, True, True, 0.64)
    assert "uncertain" not in verdict("age", 0.9, reading=0.8) + verdict("age", 0.1, reading=None)
    hint = "if the images do not draw soil_ph (seen only through its descendants), mark it shown: false"
    assert hint in verdict("hue", 0.69, drawn_ancestors=("soil_ph",)) and "shown: false" not in verdict("hue", 0.69)
    assert "shown: false" not in verdict("hue", 0.95, drawn_ancestors=("soil_ph",))  # it shows: nothing to try
    bloom = get_world("bloom").graph
    assert drawn_ancestors(bloom, "hue") == () and drawn_ancestors(get_world("strokes").graph, "intensity") == \
        ("thickness",)
    brain = {"graph": get_world("brain").graph.to_dict()}
    ckpt = lambda weight, focus, **data: {"hyper_parameters": {**brain, "focus_weight": weight},  # noqa: E731
                                          "datamodule_hyper_parameters": {"focus": focus, **data}}
    assert focused(ckpt(20, "auto", world="brain")) == {"lesion"} and focused(ckpt(0, "auto", world="brain")) == set()
    assert focused(ckpt(20, None, world="brain")) == set() and focused(ckpt(20, "lesion")) == {"lesion"}


def test_a_folder_fit_focused_the_local_nodes_its_labels_segment(tmp_path):
    brain = {"graph": get_world("brain").graph.to_dict(), "focus_weight": 20}
    (tmp_path / "labels.csv").write_text("file,lesion\na.png,1\n")
    ckpt = {"hyper_parameters": brain, "datamodule_hyper_parameters": {"focus": "auto", "folder": str(tmp_path)}}
    assert focused(ckpt) == set()  # no lesion_mask column: nothing was weighed
    (tmp_path / "labels.csv").write_text("file,lesion,lesion_mask\na.png,1,m.png\n")
    assert focused(ckpt) == {"lesion"}


def test_a_local_nodes_report_measures_the_transplant_an_export_would_make(tmp_path):
    """A fit's checkpoint has no site bank yet: the report fits one from training images, as export does, so a
    switched-on lesion is transplanted in the report as it will be in use, not decoded from its latent."""
    from causaldiff.cli import main

    config = __import__("pathlib").Path(__file__).parent.parent / "configs" / "tiny.yaml"
    main(["fit", "--config", str(config), "--data.world=brain", "--data.balance=lesion", "--trainer.max_steps=20",
          "--report.n=16", "--report.steps=3", f"--trainer.default_root_dir={tmp_path}"])
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["site_banks"]["lesion"] >= 1 and set(report["site_banks"]) == {"lesion"}
    from causaldiff.checkpoint import recommended_settings  # a fit chooses its settings by default

    assert recommended_settings(tmp_path / "checkpoints" / "last.ckpt") == report["choice"]["chosen"]
