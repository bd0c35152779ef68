"""Train the shipped models and write them to xcorr_core/weights/ (float16, a few MB each).

    .venv/bin/python scripts/train_models.py [--only birds|herd|birds_vit] [--epochs N]
    .venv/bin/python scripts/train_models.py --eval-only   # re-measure the shipped files

Prints the test accuracy / retrieval recall and records them in
xcorr_core/weights/model_card.json (the docs quote these numbers).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from xcorr_core.models import VIT_ARGS, load_checkpoint, save_checkpoint, save_vit_checkpoint
from xcorr_core.models.zoo import _FILES
from xcorr_core.training import birds_test_stats, herd_test_stats, train_birds, train_birds_vit, train_herd

WEIGHTS = Path(__file__).resolve().parents[1] / "xcorr_core" / "weights"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", choices=["birds", "herd", "birds_vit"])
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-only", action="store_true", help="re-measure the existing weight files; train nothing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    card_path = WEIGHTS / "model_card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    jobs = {"birds": train_birds, "herd": train_herd, "birds_vit": train_birds_vit}
    evals = {"birds": birds_test_stats, "herd": herd_test_stats, "birds_vit": birds_test_stats}
    for name, fn in jobs.items():
        if args.only and name != args.only:
            continue
        if args.eval_only:
            stats = evals[name](load_checkpoint(WEIGHTS / _FILES[name]))
            card.setdefault(name, {}).update(stats)
            print(json.dumps({name: stats}, indent=2))
            continue
        kwargs = {"epochs": args.epochs} if args.epochs else {}
        model, stats = fn(**kwargs)
        if name == "birds_vit":
            path = save_vit_checkpoint(model, VIT_ARGS | {"num_classes": 24}, WEIGHTS / _FILES[name], meta=stats)
        else:
            path = save_checkpoint(model, WEIGHTS / _FILES[name], meta=stats)
        stats["file_bytes"] = path.stat().st_size
        card[name] = stats
        print(json.dumps({name: stats}, indent=2))
    card_path.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
