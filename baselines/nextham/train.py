"""Training and prediction of the NextHAM reference model, through the public API only.

``train`` builds every structure's :class:`~.graph.Graph` once (a progress bar), then runs Adam
with a cosine schedule and linear warm-up, one structure per step, validates every
``validate_every`` epochs with the project's scorer (:class:`materials_ham.Evaluator`, headline
gauge MAE of the spin-diagonal real part), keeps ``last/`` and ``best/`` checkpoints (best on
that validation score), and resumes from ``last/`` when it exists.  ``predict`` writes a
predictions store with :func:`materials_ham.write_predictions`.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from materials_ham import Evaluator, MaterialsHamError, load_dataset, write_predictions
from materials_ham.conventions import HEADLINE_EDGE_CUTOFF

from .checkpoint import load_checkpoint, load_optimizer_state, save_checkpoint
from .encoding import SlotTable
from .loss import LossWeights, total_loss
from .model import ModelConfig, NextHAM, build_model, model_graph
from .training_set import TrainingSet, check_prior_training

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class TrainConfig:
    epochs: int = 30
    lr: float = 5e-4
    warmup_epochs: int = 2
    seed: int = 0
    validate_every: int = 5
    kspace_grid: int = 4            # shifted grid^3 for the reciprocal-space loss (0: off)
    dtype: str = "float32"
    device: str = "auto"
    max_structures: int = 0         # 0: the whole training split
    grad_clip: float = 10.0
    train_split: str = "train"
    val_split: str = "val"
    extra_train: list = field(default_factory=list)   # more packed datasets whose train split joins the
                                    # training structures (same engine settings; checked disjoint from
                                    # the main dataset's val/test: training_set.py)
    val_bands: bool = True          # also log validation band errors and ghost states
    val_cache_dir: str = ""         # the scorer's reference cache for validation ("" : memory only)
    cache_graphs: bool = True       # keep every prepared graph in memory (False: rebuild each step,
                                    # one structure in memory at a time: for datasets larger than RAM)
    init: str = ""                  # a checkpoint folder to start from (fine-tuning): its weights, model
                                    # config and scales; a fresh optimiser and schedule (this config's)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossWeights = field(default_factory=LossWeights)

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "train": asdict(self.train), "loss": self.loss.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        unknown = set(d) - {"model", "train", "loss"}
        if unknown:
            raise MaterialsHamError(f"unknown config sections: {', '.join(sorted(unknown))}")
        try:
            model = ModelConfig.from_dict(d.get("model", {}))
            for name, klass in (("train", TrainConfig), ("loss", LossWeights)):
                bad = set(d.get(name, {})) - set(klass.__dataclass_fields__)
                if bad:
                    raise ValueError(f"unknown {name} config keys: {', '.join(sorted(bad))}")
            return cls(model, TrainConfig(**d.get("train", {})), LossWeights(**d.get("loss", {})))
        except (TypeError, ValueError) as err:
            raise MaterialsHamError(f"invalid config: {err}") from None


def read_config(path_or_name: str | os.PathLike | None) -> Config:
    """A config file (YAML or JSON), or the name of a shipped one (``cpu``, ``tiny``, ``paper``)."""
    import yaml

    if path_or_name is None:
        path_or_name = "cpu"
    p = Path(path_or_name)
    if not p.exists() and (CONFIG_DIR / f"{path_or_name}.yaml").exists():
        p = CONFIG_DIR / f"{path_or_name}.yaml"
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except OSError as err:
        raise MaterialsHamError(f"cannot read config {path_or_name}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise MaterialsHamError(f"config {p} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise MaterialsHamError(f"config {p} must be a mapping")
    return Config.from_dict(data)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def slot_table(dataset) -> SlotTable:
    """The slot table of every element with a basis in the dataset's metadata (a dataset or a
    :class:`~.training_set.TrainingSet`)."""
    basis = dataset.basis if hasattr(dataset, "basis") else dataset.store.basis
    return SlotTable.from_shells({z: b.ls for z, b in basis.items()})


def set_scales(cfg: ModelConfig, samples) -> None:
    """Data-driven units (eV) of the model: ``input_scale`` RMS of H0, ``target_scale`` RMS of
    H - H0 over scored entries; ``node_scale``/``edge_scale`` RMS of the gauge-standardised
    correction on on-site / off-site entries within the model's cutoff (the gauge mu* S is not
    something the model has to learn); with ``density_input``, ``density_scale`` (electrons) the RMS
    of the density input (:mod:`.density`) on those blocks.  ``samples``: any iterable (streamed)."""
    from materials_ham.gauge import gauge_shift, scored_edges, spinor_overlap

    acc, rho_acc = np.zeros((4, 2)), np.zeros(2)
    for s in samples:
        L = np.repeat(s.edge_lengths(), 4 * s.block_sizes)
        on = np.repeat(s.is_onsite, 4 * s.block_sizes)
        keep = L < HEADLINE_EDGE_CUTOFF
        D = s.H - s.H0
        G = D - gauge_shift(s, D, scored_edges(s)) * spinor_overlap(s)
        for k, (x, m) in enumerate(((s.H0, keep), (D, keep), (G, on), (G, ~on & (L < cfg.cutoff)))):
            acc[k] += (float(np.sum(np.abs(x[m]) ** 2)), int(m.sum()))
        if cfg.density_input:
            from .density import density_blocks

            near = np.nonzero(s.edge_lengths() < cfg.cutoff)[0]
            rho = density_blocks(s, near, width=cfg.density_width, length=cfg.density_kgrid_length)
            rho_acc += (float(np.sum(np.abs(rho) ** 2)), len(rho))
    rms = np.sqrt(acc[:, 0] / np.maximum(acc[:, 1], 1))
    cfg.input_scale, cfg.target_scale, cfg.node_scale, cfg.edge_scale = (float(x) for x in rms)
    if cfg.density_input:
        cfg.density_scale = float(np.sqrt(rho_acc[0] / max(rho_acc[1], 1)))


def prepare(samples_with_ids, table, cfg: Config, *, kspace: bool, progress: bool, desc: str, predict: bool = False):
    """Graphs of the samples: with the k-space reference (``kspace``, training) or with what
    predictions need (``predict``, validation)."""
    from tqdm import tqdm

    out = []
    for sid, s in tqdm(samples_with_ids, desc=desc, unit="structure", disable=not progress, leave=False):
        out.append(model_graph(s, sid, table, cfg.model, dtype=_dtype(cfg.train.dtype),
                               kspace_grid=cfg.train.kspace_grid if kspace else 0, predict=predict))
    return out


def check_init_table(have: SlotTable, need: SlotTable, name) -> None:
    """Raise unless every element of ``need`` (the training data) has the same shells in ``have``
    (the model to start from): a model cannot read an element or basis it was not built for."""
    missing = sorted(z for z in need.shells if z not in have.shells)
    if missing:
        from ase.data import chemical_symbols

        raise MaterialsHamError(f"checkpoint {name} was built without the elements "
                                f"{', '.join(chemical_symbols[z] for z in missing)} of the training data; "
                                "train from scratch with them instead")
    other = sorted(z for z in need.shells if have.shells[z] != need.shells[z])
    if other:
        z = other[0]
        raise MaterialsHamError(f"checkpoint {name}: element Z={z} has shells l={list(have.shells[z])}, the training "
                                f"data l={list(need.shells[z])} (another basis)")


def _rss_mib() -> float:
    """Resident memory of this process (MiB; NaN where /proc is absent)."""
    try:
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def _schedule(total_steps: int, warmup_steps: int):
    def f(step):
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return f


def predict_split(model: NextHAM, dataset, split: str, cfg_dtype: str, device, *, progress: bool = False,
                  graphs=None):
    """Yield (id, H) with H = H0 + dH on all stored edges (complex128, eV) for ``split``."""
    from tqdm import tqdm

    ds = load_dataset(dataset, split=split) if not hasattr(dataset, "store") else dataset
    ids = ds.ids
    model.eval()
    for k in tqdm(range(len(ds)), desc=f"predicting {split}", unit="structure", disable=not progress, leave=False):
        s = ds[k]
        g = graphs[k] if graphs is not None else model_graph(s, ids[k], model.table, model.cfg,
                                                             dtype=_dtype(cfg_dtype), predict=True)
        yield ids[k], model.predict_flat(g.to(device), s.H0)


class _LazyGraphs:
    """``graphs[k]``: structure k's training graph, built when asked (nothing kept)."""

    def __init__(self, ds, table, config: Config, device):
        self.ds, self.table, self.config, self.device = ds, table, config, device

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, k: int):
        (g,) = prepare([(self.ds.ids[k], self.ds[k])], self.table, self.config,
                       kspace=self.config.train.kspace_grid > 0, progress=False, desc="")
        return g.to(self.device)


def train(dataset: str | os.PathLike, config: Config, out: str | os.PathLike, *, progress: bool = True,
          log=print, resume: bool = True) -> dict:
    """Train; returns the final state (epoch, best validation score, history).  See the module docstring."""
    from tqdm import tqdm

    out = Path(out)
    tc = config.train
    device = pick_device(tc.device)
    torch.manual_seed(tc.seed)
    ds_train = TrainingSet.open(dataset, tc.extra_train, split=tc.train_split, held_out=(tc.val_split, "test"),
                                max_structures=tc.max_structures)
    ds_val = load_dataset(dataset, split=tc.val_split)
    if not len(ds_train):
        raise MaterialsHamError(f"the {tc.train_split!r} split of {dataset} is empty")
    table = slot_table(ds_train)

    last = out / "last"
    state = {"epoch": 0, "step": 0, "best_val_mev": None, "best_epoch": None, "history": [],
             "train": asdict(tc), "loss": config.loss.to_dict(), "dataset": str(dataset)}
    opt_state = None
    if resume and (last / "checkpoint.json").exists():
        model, meta = load_checkpoint(last, device, _dtype(tc.dtype))
        config.model = model.cfg
        state.update({k: meta[k] for k in ("epoch", "step", "best_val_mev", "best_epoch", "history") if k in meta})
        opt_state = load_optimizer_state(last)
        log(f"resuming from {last} at epoch {state['epoch']}")
    elif tc.init:
        model, meta = load_checkpoint(tc.init, device, _dtype(tc.dtype))
        check_init_table(model.table, table, tc.init)
        config.model, table = model.cfg, model.table
        prior = [meta.get("dataset")] + list(meta.get("train", {}).get("extra_train", []))
        for name in check_prior_training(dataset, [p for p in prior if p], split=tc.train_split,
                                         held_out=(tc.val_split, "test")):
            log(f"warning: cannot open {name}, which {tc.init} was trained on: not checked for leaks")
        state["init"] = {"checkpoint": str(tc.init), "epoch": meta.get("epoch"), "dataset": meta.get("dataset"),
                         "extra_train": meta.get("train", {}).get("extra_train", [])}
        log(f"starting from the weights of {tc.init} (epoch {meta.get('epoch')}, trained on "
            f"{'; '.join([str(meta.get('dataset'))] + state['init']['extra_train'])}); its model config and "
            "scales are kept, the optimiser and schedule start afresh")
    else:
        set_scales(config.model, (ds_train[k] for k in range(len(ds_train))))
        model = build_model(config.model, table, _dtype(tc.dtype)).to(device)
    log(f"NextHAM: {model.n_parameters():,} parameters, {len(config.model.ranges)} sub-model(s), "
        f"device {device}, {len(ds_train)} training / {len(ds_val)} validation structures")
    if tc.extra_train:
        log("training structures from " + "; ".join(ds_train.sources))

    if tc.cache_graphs:
        t0 = time.perf_counter()
        graphs = prepare(zip(ds_train.ids, (ds_train[k] for k in range(len(ds_train)))), table, config,
                         kspace=tc.kspace_grid > 0, progress=progress, desc="preparing training graphs")
        val_graphs = prepare(zip(ds_val.ids, (ds_val[k] for k in range(len(ds_val)))), table, config, kspace=False,
                             progress=progress, desc="preparing validation graphs", predict=True)
        log(f"prepared {len(graphs) + len(val_graphs)} graphs in {time.perf_counter() - t0:.1f} s")
        graphs = [g.to(device) for g in graphs]
    else:
        graphs = _LazyGraphs(ds_train, table, config, device)
        val_graphs = None

    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    total = tc.epochs * len(graphs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(total, tc.warmup_epochs * len(graphs)))
    if opt_state is not None:
        opt.load_state_dict(opt_state["optimizer"])
        if opt_state.get("scheduler"):
            sched.load_state_dict(opt_state["scheduler"])
    evaluator = Evaluator(dataset, split=tc.val_split, bands=tc.val_bands,
                          cache_dir=tc.val_cache_dir or None) if len(ds_val) else None

    for epoch in range(state["epoch"], tc.epochs):
        model.train()
        order = np.random.default_rng([tc.seed, epoch]).permutation(len(graphs))
        krng = np.random.default_rng([tc.seed, epoch, 1])
        sums: dict[str, float] = {}
        t_epoch = time.perf_counter()
        bar = tqdm(order, desc=f"epoch {epoch + 1}/{tc.epochs}", unit="structure", disable=not progress, leave=False)
        for k in bar:
            g = graphs[k]
            opt.zero_grad(set_to_none=True)
            loss, parts = total_loss(g, model(g), config.loss, krng if tc.kspace_grid else None)
            loss.backward()
            if tc.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            sched.step()
            state["step"] += 1
            for name, v in parts.items():
                sums[name] = sums.get(name, 0.0) + v
            bar.set_postfix(real_meV=f"{parts['real_mev']:.3f}")
        seconds = time.perf_counter() - t_epoch
        row = {"epoch": epoch + 1, "seconds": seconds, "structures_per_s": len(graphs) / seconds, "rss_mib": _rss_mib(),
               **{f"train_{k}": v / len(graphs) for k, v in sums.items()}}
        state["epoch"] = epoch + 1
        if evaluator is not None and ((epoch + 1) % tc.validate_every == 0 or epoch + 1 == tc.epochs):
            preds = dict(predict_split(model, ds_val, tc.val_split, tc.dtype, device, graphs=val_graphs))
            headline = evaluator.eval(preds)["headline"]
            val = headline["spin_diag_real_mev"]
            row["val_gauge_mae_mev"] = val
            for key in ("band_grid_w1_aligned_mev", "ghost_states_w1_per_k"):
                if headline.get(key) is not None:
                    row[f"val_{key}"] = headline[key]
            if state["best_val_mev"] is None or val < state["best_val_mev"]:
                state["best_val_mev"], state["best_epoch"] = val, epoch + 1
                save_checkpoint(out / "best", model, {**state, "history": state["history"] + [row]})
        state["history"].append(row)
        log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        save_checkpoint(last, model, state, opt, sched)
    if state["best_val_mev"] is None:          # no validation split: the last epoch is the best
        save_checkpoint(out / "best", model, state)
    (out / "history.json").write_text(json.dumps(state["history"], indent=1))
    return state


def predict(checkpoint, dataset, split: str, out: str | os.PathLike, *, device: str = "auto",
            progress: bool = True, overwrite: bool = False, model_name: str | None = None) -> Path:
    """Write H = H0 + dH for every structure of ``split`` as a predictions store (returns its path).

    ``checkpoint``: one checkpoint folder, or several (a list): then H is the mean of their
    predicted H (an ensemble; each model builds its own graph, so configs may differ).
    """
    paths = [checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else list(checkpoint)
    if not paths:
        raise MaterialsHamError("no checkpoint given")
    dev = pick_device(device)
    streams, names = [], []
    for path in paths:
        model, meta = load_checkpoint(path, dev)
        dtype = meta.get("train", {}).get("dtype", "float32")
        streams.append(predict_split(model, dataset, split, dtype, dev, progress=progress and not streams))
        names.append(f"{Path(path).resolve().parent.name}/{Path(path).resolve().name}, epoch {meta.get('epoch')}")
    if model_name is None:
        model_name = (f"NextHAM reference model ({names[0]})" if len(names) == 1 else
                      f"NextHAM reference model, mean H of {len(names)} checkpoints ({'; '.join(names)})")
    return write_predictions(out, dataset, _mean_h(streams), split=split, model=model_name, overwrite=overwrite,
                             progress=False)


def _mean_h(streams):
    """(id, mean H) from parallel (id, H) streams over the same structures."""
    for items in zip(*streams):
        sid = items[0][0]
        yield sid, sum(h for _, h in items) / len(items)
