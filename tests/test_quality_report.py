"""The quality report a fit ends with: every section, a verdict per node, one grid per node, from the evaluation."""

import json

import pytest

from causaldiff.evaluation.quality_report import verdict


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
    assert ("--data.focus=lesion" in verdict("lesion", 0.1, local=True)) and "focus" not in verdict("age", 0.1)
