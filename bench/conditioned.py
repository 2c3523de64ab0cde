"""Does an agent trained on ``paintgym/Canvas-v0`` with ``--condition`` paint the class it is asked for?

Paints ``--episodes`` held-out episodes of a run (the trainer's evaluation seeds; env ``i`` is asked for
class ``i mod K``), lets a classifier judge each painting (one trained with another seed than the one
that rewarded the agent), and prints the fraction read as the class asked for, per class and overall,
with the diversity of the paintings (:func:`experiments.report.diversity`) within each class. Saves a
contact sheet with one row per class::

    python bench/conditioned.py runs/cond --judge runs/classifier-seed1 --out docs/images/conditioned.png
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from paintgym import generative
from paintgym.canvas.export import save_png
from paintgym.canvas.images import to_float
from paintgym.experiments.evaluate import evaluate
from paintgym.experiments.pretrained import load_agent
from paintgym.experiments.report import diversity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a paintgym train run directory (trained with --condition)")
    parser.add_argument("--judge", required=True, help="classifier checkpoint or run folder that judges the paintings")
    parser.add_argument("--episodes", type=int, default=200, help="paintings (env i is asked for class i mod K)")
    parser.add_argument("--per-row", type=int, default=10, help="paintings per class on the contact sheet")
    parser.add_argument("--scale", type=int, default=2, help="pixels per canvas pixel on the contact sheet")
    parser.add_argument("--out", default=None, help="contact sheet PNG (one row per class)")
    args = parser.parse_args()

    agent = load_agent(args.run, "cpu")
    env = agent.make_env(args.episodes)
    classes = env.core.num_classes
    if not classes:
        raise SystemExit(f"{args.run} was trained without --condition")
    result = evaluate(agent.act, env, agent.eval_seed)
    asked = env.core.condition.cpu().numpy()
    judge = generative.load(args.judge, device="cpu", kind="classifier").eval()
    with torch.no_grad():
        images = generative.adapt_images(to_float(result.paintings), judge.size, judge.channels)
        read = judge.predict(images).numpy()
        p_asked = judge.log_probs(images).exp().numpy()[np.arange(len(asked)), asked]
    names = judge.output_names
    per_class = {}
    for k in range(classes):
        mine = asked == k
        counts = np.bincount(read[mine], minlength=len(names))
        per_class[names[k]] = {"read_as_asked": float((read[mine] == k).mean()),
                               "read_as": [names[i] for i in counts.argsort()[::-1][:2]],
                               "mean_p": float(p_asked[mine].mean()),
                               "diversity": diversity(result.paintings[mine])}
    summary = {"run": args.run, "judge": args.judge, "episodes": int(len(asked)),
               "read_as_asked": float((read == asked).mean()), "mean_p_asked": float(p_asked.mean()),
               "diversity": diversity(result.paintings), "eval_return": result.metrics["return"],
               "per_class": per_class}
    print(json.dumps(summary, indent=1))
    if args.out:
        rows = []
        for k in range(classes):
            row = list(result.paintings[asked == k][: args.per_row])
            row += [np.full_like(result.paintings[0], 255)] * (args.per_row - len(row))
            rows.append(np.concatenate([np.pad(p, ((1, 1), (1, 1), (0, 0)), constant_values=200) for p in row], 1))
        sheet = np.concatenate(rows, 0).repeat(args.scale, 0).repeat(args.scale, 1)
        save_png(args.out, sheet)
        print(f"contact sheet: {args.out} (row k: asked for class {', '.join(names[:classes])})")


if __name__ == "__main__":
    main()
