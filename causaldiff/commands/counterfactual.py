"""``causaldiff counterfactual``: counterfactuals of every input image under ``--do``, written as a loadable folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from causaldiff.commands import common


def register(sub) -> None:
    cf = sub.add_parser("counterfactual", help="write counterfactuals of a folder's images under --do")
    common.add_inference_args(cf)
    cf.add_argument("--do", action="append", required=True,
                    help="intervention, repeatable: 'node=value', 'node+=delta', 'node-=delta'")
    cf.add_argument("--out", required=True, help="output folder (images + labels.csv in the loader's format)")
    cf.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from causaldiff.data.folder import write_folder
    from causaldiff.inference.batch import counterfactuals
    from causaldiff.interventions import resolve
    from causaldiff.io import encode_like

    ckpt, opts, pipe = common.load(args)
    do = resolve(args.do, pipe.graph)
    inp = common.inputs(args, ckpt, pipe, None)
    cf_x, cf_labels = counterfactuals(pipe, inp.x, inp.labels, do, opts, ("counterfactual",))
    files, names = [], []
    for i, x in enumerate(cf_x.numpy()):  # each image in its source's depth
        suffix, data = encode_like((x + 1) / 2, inp.sources[i] if inp.sources else {"depth": 8})
        files.append(data)
        names.append(f"cf_{flat_stem(inp.names[i])}{suffix}")
    text = ";".join(str(iv) for iv in do)
    extra = {"source_file": inp.names, "intervention": [text] * len(names), "counterfactual": [1] * len(names)}
    write_folder(args.out, files, cf_labels, pipe.graph, names, extra)
    print(f"wrote {len(names)} counterfactual images and labels.csv to {args.out}")


def flat_stem(name: str) -> str:
    """``sub/a.nii.gz`` → ``sub__a``: one flat, collision-free file stem per source path."""
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else str(Path(name).with_suffix(""))
    return stem.replace("/", "__")
