"""The CGC paper's check on SynthBirds: fine-tune the shipped classifier with CE, with CGC and with
CGC without negatives (same seed, batches, views and steps), over seeds; score every model.

    python plugins/cgc/scripts/cgc_study.py [--steps 400] [--seeds 0 1 2] [--out .../weights/study.json]

Results are appended to the JSON file atomically after every run and a rerun skips the runs already
there (the study resumes). Seed 0's CE and CGC models are saved beside it (float16 SmallResNet
checkpoints) for the demo's side-by-side heatmaps. The demo and the docs only read these files.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from xcorr_core.data import SynthBirds
from xcorr_core.fileio import atomic_write
from xcorr_core.models import load_pretrained, save_checkpoint
from xcorr_cgc.study import FinetuneConfig, evaluate, finetune, study_path, test_sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--modes", nargs="+", default=["ce", "cgc", "cgc_noneg"])
    ap.add_argument("--out", type=Path, default=study_path())
    args = ap.parse_args()
    data = SynthBirds("train", per_class=60, progress=False)  # the shipped classifier's training set
    images = data.images.float() / 255
    tests = test_sets()
    study = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    study["config"] = FinetuneConfig(steps=args.steps, batch=args.batch).model_dump(exclude={"mode", "seed"})
    study["config"]["train_images"] = len(data)
    done = {(r["mode"], r["seed"]) for r in study["runs"]}
    write = lambda: atomic_write(args.out, lambda f: f.write(json.dumps(study, indent=1).encode()))  # noqa: E731
    if ("shipped", 0) not in done:
        study["runs"].append({"mode": "shipped", "seed": 0, "log": {}, "metrics": evaluate(load_pretrained("birds"), data=tests)})
        write()
    for seed in args.seeds:
        for mode in args.modes:
            if (mode, seed) in done:
                continue
            model = load_pretrained("birds")
            log = finetune(model, images, data.labels, FinetuneConfig(mode=mode, steps=args.steps, batch=args.batch, seed=seed))
            metrics = evaluate(model, data=tests)
            study["runs"].append({"mode": mode, "seed": seed, "log": log, "metrics": metrics})
            write()
            if seed == 0 and mode in ("ce", "cgc"):
                save_checkpoint(model, args.out.with_name(f"birds_{mode}.pt"), meta={"mode": mode, "seed": seed, "steps": args.steps})
            top = 100 * sum(metrics["top1_clean"]) / len(metrics["top1_clean"])
            ch = [v for v in metrics["ch"] if v == v]
            print(f"{mode} seed {seed}: {log['seconds']} s, top-1 clean {top:.1f}, CH {sum(ch) / len(ch):.1f}", flush=True)


if __name__ == "__main__":
    main()
