"""Train the plugin's auxiliary models and write them to xcorr_scc_counterfactual/weights/ (float16).

    .venv/bin/python plugins/scc_counterfactual/scripts/train_aux_models.py [--only parts|ssl] [--epochs N] [--dense infonce|swav]

The shipped files: parts (20 epochs, 648 s) and ssl (``--only ssl --epochs 20``, 2220 s, one thread each
while sharing the 2-core CPU).

- parts: parts detector on SynthBirds keypoints (the paper's Table 4 upper bound).
- ssl:   self-supervised SmallResNet (SimCLR global + dense SwAV or InfoNCE on corresponding cells), no labels.

Records the training figures in weights/aux_card.json (the docs quote them).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from xcorr_core.models import save_checkpoint
from xcorr_scc_counterfactual.training import train_parts_detector, train_ssl

WEIGHTS = Path(__file__).resolve().parents[1] / "xcorr_scc_counterfactual" / "weights"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", choices=["parts", "ssl"])
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dense", choices=["infonce", "swav"], default="infonce", help="dense loss of the SSL model (shipped: infonce)")
    ap.add_argument("--out-suffix", default="", help="write <name><suffix>_smallresnet.pt (to compare recipes)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    jobs = {"parts": train_parts_detector, "ssl": train_ssl}
    for name, fn in jobs.items():
        if args.only and name != args.only:
            continue
        kwargs = {"epochs": args.epochs} if args.epochs else {}
        if name == "ssl":
            kwargs["dense"] = args.dense
        model, stats = fn(**kwargs)
        name = name + args.out_suffix
        path = save_checkpoint(model, WEIGHTS / f"{name}_smallresnet.pt", meta=stats)
        stats["file_bytes"] = path.stat().st_size
        card_path = WEIGHTS / "aux_card.json"  # re-read: the two jobs may run in parallel
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        card[name] = stats
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(json.dumps({name: stats}, indent=2))


if __name__ == "__main__":
    main()
