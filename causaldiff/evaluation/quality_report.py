"""The quality report of a trained model: does each intervention show, in plain words, beside doing nothing and the
truth.

``quality_report(checkpoint, out)`` writes ``report.md``, ``report.json`` and one intervention grid per node
(``grid_<node>.png``) into ``out`` and returns the report. It reuses the evaluation layer (:class:`Evaluator` for the
effect gains, :func:`condition_use` for the swap test) on the first ``n`` held-out items at the checkpoint's
recommended settings, read by an anti-causal predictor fitted on the training split of the same data (written
beside the report, reused when present). With ``choose``, it first measures the candidate inference settings on the
next ``n`` held-out items (:mod:`causaldiff.evaluation.choose`), writes the chosen ones into the checkpoint as its
recommendation, and reports at them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from causaldiff.checkpoint import load_checkpoint
from causaldiff.data.focus import focus_nodes
from causaldiff.data.folder import has_column
from causaldiff.evaluation.choose import (
    CANDIDATES,
    GAIN_TIE,
    MEAN_FLOOR,
    NODE_FLOOR,
    choose,
    measure_candidates,
    settings,
)
from causaldiff.evaluation.evaluate import EvalData, Evaluator, eval_data
from causaldiff.evaluation.predictor import AntiCausalPredictor
from causaldiff.graph import CausalGraph
from causaldiff.inference.config import CounterfactualConfig
from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.io import atomic_write_bytes, atomic_write_text

SHOWS, WEAK = 0.8, 0.5  # effect gain at which an intervention shows / shows weakly (1 = the truth, 0 = identity)
# Epochs of the report's own predictor. At 5, the brain folder's (8,000 images, 5 % lesions) read its lesions at
# balanced accuracy 0.64 on the test split; at 15, 0.98 (the reference predictor 1.00), strokes' fractures 0.87 -> 0.96,
# no other reading lower by more than 0.001 (docs/results.md, "Test beds"); about 2 minutes on 2 CPU cores.
PREDICTOR_EPOCHS = 15


def fit_predictor(ckpt: dict, out: Path, epochs: int = PREDICTOR_EPOCHS) -> Path:
    """Train the anti-causal predictor (PredictorModule's default network and learning rate) for ``epochs`` on the
    training split of the checkpoint's own data and export it to ``out``."""
    import tempfile

    import pytorch_lightning as pl

    from causaldiff.evaluation.predictor import PredictorModule, export_predictor
    from causaldiff.inference.inputs import checkpoint_datamodule

    pl.seed_everything(0, verbose=False)
    dm = checkpoint_datamodule(ckpt)
    module = PredictorModule(dm.graph_spec, dm.label_stats, dm.channels)
    with tempfile.TemporaryDirectory() as work:
        saver = pl.callbacks.ModelCheckpoint(dirpath=work, save_last=True, save_top_k=0)
        pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, callbacks=[saver],
                   enable_progress_bar=False, enable_model_summary=False,
                   limit_val_batches=2).fit(module, datamodule=dm)
        return export_predictor(Path(work) / "last.ckpt", out)


def verdict(node: str, gain: float | None, local: bool = False, focused: bool = False,
            reading: float | None = None, drawn_ancestors: tuple[str, ...] = ()) -> str:
    """One line in plain words: does do(node) show, and what to try when it does not (``focused``: the fit already
    weighed the local finding's pixels more; ``reading``: how well the predictor reads the node, which, below
    :data:`SHOWS`, makes the gain uncertain; ``drawn_ancestors``: its ancestors the graph calls shown, from whose
    blocks the decoder may read what the node looks like)."""
    if gain is None:
        return f"do({node}): not measured (the predictor cannot tell identity from the truth on this node)"
    doubt = "" if reading is None or reading >= SHOWS else \
        f" (uncertain: the predictor reads held-out {node} labels at {reading:.2f} only)"
    if gain >= SHOWS:
        return f"do({node}) shows: gain {gain:.2f}{doubt}"
    tries = "train longer; try --guidance 2; the swap test below says whether the decoder follows z"
    if local and focused:
        tries += ("; its pixels weighed more in training already: a few held-out items show it, so read it with a "
                  "predictor fitted on more of them (causaldiff report --predictor) or raise --report.n")
    elif local:
        tries += (f"; a small finding: give its segmentations as labels.csv's column {node}_mask and fit with "
                  "--data.focus=auto --model.focus_weight=20 (the templates' defaults)")
    if drawn_ancestors:
        tries += (f"; if the images do not draw {' or '.join(drawn_ancestors)} (seen only through its descendants), "
                  "mark it shown: false in the graph, so the decoder reads the look from the node's own block")
    word = "shows weakly" if gain >= WEAK else "does not show"
    return f"do({node}) {word}: gain {gain:.2f}{doubt} — {tries}"


def drawn_ancestors(graph, node: str) -> tuple[str, ...]:
    """The ancestors of ``node`` the graph calls shown (drawn in the image), in topological order."""
    return tuple(a for a in graph.ancestors(node) if graph[a].shown)


def quality_report(checkpoint, out: str | Path, n: int = 64, steps: int = 20, predictor: str | Path | None = None,
                   epochs: int = PREDICTOR_EPOCHS, rows: int = 6, choose_settings: bool = False) -> dict:
    """Write the report of ``checkpoint`` (a path or shipped name) into ``out``; returns it. ``choose_settings``
    (a checkpoint file only) chooses its inference settings first and stores them in it."""
    from causaldiff.evaluation.condition_use import condition_use
    from causaldiff.inference.grid import write_grid
    from causaldiff.inference.inputs import checkpoint_inputs

    if choose_settings and not Path(checkpoint).is_file():
        raise ValueError(f"choosing settings writes them into the checkpoint: give its file, not {checkpoint!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(checkpoint)
    config = CounterfactualConfig.for_checkpoint(ckpt, steps=steps, batch_size=64)
    pipe = _with_site_banks(CounterfactualPipeline.from_checkpoint(ckpt, config), ckpt)
    pred_path = Path(predictor) if predictor else out / "predictor.ckpt"
    if not pred_path.is_file():
        fit_predictor(ckpt, pred_path, epochs)
    reader = AntiCausalPredictor.from_checkpoint(pred_path)
    reader.check_graph(pipe.graph)
    held_out = eval_data(ckpt, None)
    data = held_out.part(n, nodes=len(pipe.graph))
    reading = reader.reading(held_out.x, held_out.labels)
    choice = None
    if choose_settings:
        choice = _choose(checkpoint, ckpt, pipe, reader, held_out, n, config)
        config = CounterfactualConfig.for_checkpoint(ckpt, steps=steps, batch_size=64)
        pipe = _with_site_banks(CounterfactualPipeline.from_checkpoint(ckpt, config), ckpt)
    evaluation = Evaluator(pipe.model, reader, data, config, cycles=1, variants=["causaldiff"], progress=False,
                           site_banks=pipe.site_banks).run()
    use = condition_use(pipe, reader.to(pipe.device), data.x, data.labels, steps, world=data.world,
                        exogenous=data.exogenous)
    inputs = checkpoint_inputs(ckpt, rows)
    for node in pipe.graph.order:
        write_grid(pipe, inputs, [node], None, config, out / f"grid_{node}.png")
    g, row = evaluation["gains"]["causaldiff"], evaluation["variants"]["causaldiff"]
    weighed = focused(ckpt)
    report = {"checkpoint": str(checkpoint), "global_step": ckpt.get("global_step"), "n": data.x.shape[0],
              "config": config.asdict(), "world": evaluation["meta"]["world"], "predictor": str(pred_path),
              "effect_gain": g["effect_gain"], "effect_gain_mean": g["effect_gain_mean"],
              "effect_gain_descendants": g["effect_gain_descendants"], "reading": reading,
              "reading_n": held_out.x.shape[0], "true_cf_l1_ratio": g["true_cf_l1_ratio"],
              "composition@1": row["composition"]["1"], "reversibility@1": row["reversibility"]["1"],
              "swap": {kind: use["swap"][kind]["z"] for kind in ("fresh", "inverted")},
              "swap_reference": use["swap_reference"]["z"],
              "verdicts": [verdict(node, g["effect_gain"].get(node), pipe.graph[node].local, node in weighed,
                                   reading[node], drawn_ancestors(pipe.graph, node)) for node in pipe.graph.order],
              "grids": [f"grid_{node}.png" for node in pipe.graph.order], "choice": choice,
              "site_banks": {node: bank.sites.shape[0] for node, bank in pipe.site_banks.items()},
              "evaluation": evaluation}
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    atomic_write_text(out / "report.md", markdown(report, pipe.graph.order))
    return report


def focused(ckpt: dict) -> set[str]:
    """The nodes whose pixels the checkpoint's fit weighed more: its data's ``focus`` under a positive focus weight
    (in any stage)."""
    hp, data = ckpt.get("hyper_parameters") or {}, ckpt.get("datamodule_hyper_parameters") or {}
    weighed = hp.get("focus_weight") or any(s.get("focus_weight") for s in hp.get("stages") or [])
    if not data.get("focus") or not weighed:
        return set()
    folder = data.get("folder")
    marked = (lambda n: True) if folder is None else (lambda n: has_column(folder, f"{n}_mask"))
    return set(focus_nodes(CausalGraph.from_dict(hp["graph"]), data["focus"], marked, "the checkpoint's data"))


def _with_site_banks(pipe: CounterfactualPipeline, ckpt: dict) -> CounterfactualPipeline:
    """``pipe`` with a site bank for each local node it has none for (a fit's checkpoint, before export), fitted on
    training images as export does: the report measures the transplant an exported model makes."""
    from causaldiff.inference.inputs import training_images
    from causaldiff.inference.sites import fit_site_banks

    if any(pipe.graph[k].local and k not in pipe.site_banks for k in pipe.graph.order):
        banks = fit_site_banks(pipe, *training_images(ckpt))
        pipe.site_banks.update({k: v for k, v in banks.items() if k not in pipe.site_banks})
    return pipe


def _choose(checkpoint, ckpt: dict, pipe, reader, test: EvalData, n: int, config: CounterfactualConfig) -> dict:
    """Measure :data:`CANDIDATES` on ``test`` items the report (the first ``n``) does not use (its own where the test
    split is too small), store the chosen settings as ``ckpt["inference"]`` and in the checkpoint file; return the
    choice."""
    path = Path(checkpoint)
    try:
        held_out, where = test.part(n, start=n, nodes=len(pipe.graph)), "the next held-out items"
    except ValueError:
        held_out, where = test.part(n), "the report's own items (the test split is too small to hold more out)"
    rows = measure_candidates(pipe.model, reader, held_out, config, pipe.site_banks)
    chosen = settings(choose(rows))
    ckpt["inference"] = chosen
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write_bytes(path, buf.getvalue())
    return {"chosen": chosen, "candidates": rows, "items": where, "n": held_out.x.shape[0]}


def _choice_lines(choice: dict) -> list[str]:
    """The candidate settings' table, the chosen one in bold."""
    keys = list(CANDIDATES[0])
    lines = ["", f"Settings chosen on {choice['n']} of {choice['items']}: every effect gain >= {NODE_FLOOR} and "
             f"their mean >= {MEAN_FLOOR} first (else a lowest gain within {GAIN_TIE} of the highest), then the lowest "
             "true-CF L1 (without a truth: the smallest change of the input). Stored in the checkpoint as its "
             "recommendation.", "",
             "| " + " | ".join(keys) + " | lowest gain | mean gain | true-CF L1 / identity's | L1 to the input |",
             "|" + "---|" * (len(keys) + 4)]
    for r in choice["candidates"]:
        mark = "**" if {k: r[k] for k in keys} == choice["chosen"] else ""
        lines.append("| " + " | ".join(f"{mark}{r[k]}{mark}" for k in keys) + f" | {_cell(r['lowest_gain'])} | "
                     f"{_cell(r['effect_gain_mean'])} | {_cell(r['true_cf_l1_ratio'])} | {_cell(r['input_l1'])} |")
    return lines


def _cell(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def markdown(report: dict, nodes: list[str]) -> str:
    """The report as Markdown: verdicts, the gains and swap test per node beside their references, the grids."""
    ref = "the truth" if report["world"] else "the image B"
    lines = [f"# Quality report: {report['checkpoint']} (step {report['global_step']})", "",
             f"n = {report['n']} held-out items, {report['config']['steps']} DDIM steps, settings "
             + ", ".join(f"{k} {report['config'][k]}" for k in CounterfactualConfig.recommendable()) + ".", "",
             *[f"- {v}" for v in report["verdicts"]], "",
             "| node | effect gain (1 = the truth, 0 = doing nothing) | swap test, fresh noise | inverted noise | "
             f"reference ({ref}) | the predictor reads it |", "|---|---|---|---|---|---|"]
    reading = report.get("reading") or {}
    for node in nodes:
        lines.append(f"| {node} | {_cell(report['effect_gain'].get(node))} | {_cell(report['swap']['fresh'][node])} "
                     f"| {_cell(report['swap']['inverted'][node])} | {_cell(report['swap_reference'][node])} "
                     f"| {_cell(reading.get(node))} |")
    lines += ["", f"Mean effect gain {_cell(report['effect_gain_mean'])}, descendants "
              f"{_cell(report['effect_gain_descendants'])}; true-CF L1 / identity's "
              f"{_cell(report['true_cf_l1_ratio'])} (< 1 beats doing nothing); composition@1 "
              f"{_cell(report['composition@1'])} and reversibility@1 {_cell(report['reversibility@1'])} "
              "(L1 on 0–255, 0 is exact). The predictor reads each node's labels on "
              f"{report.get('reading_n', '—')} held-out items at the last column's balanced accuracy (discrete) or R² "
              "(continuous): a gain read by a predictor that reads its node poorly is uncertain.",
              *(_choice_lines(report["choice"]) if report.get("choice") else []), "",
              *[f"![{g}]({g})" for g in report["grids"]]]
    return "\n".join(lines) + "\n"


def summary(report: dict) -> str:
    """A few lines for the terminal."""
    return "\n".join([f"mean effect gain {_cell(report['effect_gain_mean'])}, true-CF L1 / identity's "
                      f"{_cell(report['true_cf_l1_ratio'])}", *report["verdicts"]])
