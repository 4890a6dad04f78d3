"""Training and inference speed of the NextHAM reference model, against the engine's own time.

For the structures of a split it prints, on the current device (CPU by default):

* ``prepare``: building each structure's graph (encoding H0, plans; plus the k-space reference
  for training) -- paid once per structure and cached during training;
* ``train step``: forward + loss (real + reciprocal space + trace) + backward + Adam, structures/s;
* ``inference``: forward pass only (structures/s), and end to end (graph + forward + H = H0 + dH);
* the engine's time for the same structures from the dataset index (GPAW SCF with SOC, and the
  whole engine run including H0 and the extraction), and the ratio inference / engine.

    python benchmarks/nextham_speed.py --dataset DATASET [--split train] [--config cpu] [--checkpoint RUN/best]

Without ``--checkpoint`` an untrained model of the config is timed (the cost does not depend on
the weights).  Set OMP_NUM_THREADS for stable numbers; ``--threads`` sets torch's.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import torch

    from baselines.nextham.checkpoint import load_checkpoint
    from baselines.nextham.loss import total_loss
    from baselines.nextham.model import build_model, model_graph
    from baselines.nextham.train import _dtype, read_config, set_scales, slot_table
    from materials_ham import load_dataset

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--config", default="cpu")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--max-structures", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    ds = load_dataset(args.dataset, split=args.split)
    n = min(args.max_structures, len(ds))
    samples = [ds[k] for k in range(n)]
    ids = ds.ids[:n]
    cfg = read_config(args.config)
    if args.checkpoint:
        model, meta = load_checkpoint(args.checkpoint, device)
        cfg.model = model.cfg
    else:
        set_scales(cfg.model, samples)
        model = build_model(cfg.model, slot_table(ds), _dtype(cfg.train.dtype)).to(device)
    table = model.table
    dtype = _dtype(cfg.train.dtype)

    def prep(s, sid, kspace):
        """A training graph (with the k-space reference) or a prediction graph."""
        return model_graph(s, sid, table, cfg.model, dtype=dtype, kspace_grid=cfg.train.kspace_grid if kspace else 0,
                           predict=not kspace).to(device)

    t = time.perf_counter()
    graphs_train = [prep(s, sid, True) for s, sid in zip(samples, ids)]
    t_prep_train = time.perf_counter() - t
    t = time.perf_counter()
    graphs = [prep(s, sid, False) for s, sid in zip(samples, ids)]
    t_prep = time.perf_counter() - t

    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    loss, _ = total_loss(graphs_train[0], model(graphs_train[0]), cfg.loss, rng)   # warm-up
    loss.backward()
    t = time.perf_counter()
    for g in graphs_train:
        opt.zero_grad(set_to_none=True)
        loss, _ = total_loss(g, model(g), cfg.loss, rng if cfg.train.kspace_grid else None)
        loss.backward()
        opt.step()
    t_train = time.perf_counter() - t

    model.eval()
    with torch.no_grad():
        model(graphs[0])
        t = time.perf_counter()
        for g in graphs:
            model(g)
        t_fwd = time.perf_counter() - t
    t = time.perf_counter()
    for s, sid in zip(samples, ids):
        model.predict_flat(prep(s, sid, False), s.H0)
    t_e2e = time.perf_counter() - t

    idx = ds.index.set_index("id").loc[ids]
    info = [json.loads(x) for x in idx["info_json"]]
    scf = np.array([i.get("seconds_scf", np.nan) for i in info], float)
    total = idx["seconds_total"].to_numpy(float)
    edges = np.array([len(g.src) for g in graphs])
    timed = f"checkpoint {args.checkpoint}" if args.checkpoint else f"config {args.config}"
    print(f"NextHAM speed on {n} {args.split} structures of {args.dataset} "
          f"({model.n_parameters():,} parameters, {timed}, device {device}, "
          f"torch threads {torch.get_num_threads()}; graph edges per structure: median {np.median(edges):.0f}, "
          f"max {edges.max()})")
    rows = [
        ("prepare (inference graph)", t_prep),
        ("prepare (training graph, + k-space reference)", t_prep_train),
        ("train step (fwd + loss + bwd + Adam)", t_train),
        ("inference, forward only", t_fwd),
        ("inference, end to end (graph + forward + H0 + dH)", t_e2e),
    ]
    for name, secs in rows:
        print(f"  {name:52s} {secs / n * 1e3:9.1f} ms/structure  {n / secs:8.2f} structures/s")
    print(f"  {'engine: GPAW SCF with SOC (index)':52s} {np.nanmean(scf) * 1e3:9.1f} ms/structure")
    print(f"  {'engine: whole run, H0 + SCF + extraction (index)':52s} {np.mean(total) * 1e3:9.1f} ms/structure")
    print(f"ratio inference (end to end) / engine SCF:       {t_e2e / np.nansum(scf):.4f}")
    print(f"ratio inference (end to end) / engine whole run: {t_e2e / total.sum():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
