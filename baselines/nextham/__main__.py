"""``python -m baselines.nextham train|predict``: the NextHAM reference model's command line.

    python -m baselines.nextham train --dataset DATASET [--config cpu|tiny|paper|FILE] --out RUN
    python -m baselines.nextham predict --checkpoint RUN/best --dataset DATASET --split test -o preds.zarr

Errors of the package (bad dataset, config or checkpoint) print one line and exit non-zero.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """The NextHAM reference model: train on a Materials-HAM-SOC dataset, predict a split."""


@cli.command()
@click.option("--dataset", required=True, help="Packed dataset folder (or name).")
@click.option("--config", "config_name", default="cpu", show_default=True,
              help="Config file (YAML/JSON) or the name of a shipped one (baselines/nextham/configs: cpu, "
                   "cpu-operator, cpu-operator-only, cpu-real-space-only, paper, tiny).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder (checkpoints last/, best/).")
@click.option("--epochs", type=int, default=None, help="Override the config's number of epochs.")
@click.option("--seed", type=int, default=None, help="Override the config's seed.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, ... (default: the config's, auto).")
@click.option("--max-structures", type=int, default=None, help="Train on the first N structures only.")
@click.option("--extra-train", multiple=True, metavar="DATASET",
              help="Another packed dataset whose train split joins the training structures (repeatable). It must "
                   "share the engine settings and bases; a structure of the main val/test splits is an error.")
@click.option("--init", "init", type=click.Path(path_type=Path), default=None, metavar="CHECKPOINT",
              help="Start from this checkpoint's weights (fine-tuning, e.g. RUN/best): its model config and scales "
                   "are kept; epochs, learning rate and schedule are this config's. Ignored when RUN/last resumes.")
@click.option("--lr", type=float, default=None, help="Override the config's learning rate.")
@click.option("--no-resume", is_flag=True, help="Start afresh even if RUN/last exists.")
def train(dataset, config_name, out, epochs, seed, device, max_structures, extra_train, init, lr, no_resume):
    """Train (resumable: re-run the same command to continue from RUN/last)."""
    from .train import read_config, train as run

    cfg = read_config(config_name)
    for name, value in (("epochs", epochs), ("seed", seed), ("device", device), ("max_structures", max_structures),
                        ("lr", lr), ("init", str(init) if init else None)):
        if value is not None:
            setattr(cfg.train, name, value)
    if extra_train:
        cfg.train.extra_train = [str(x) for x in extra_train]
    state = run(dataset, cfg, out, progress=sys.stderr.isatty(), log=lambda m: click.echo(m, err=True),
                resume=not no_resume)
    click.echo(f"done: {state['epoch']} epochs; best validation gauge MAE "
               f"{state['best_val_mev'] if state['best_val_mev'] is not None else float('nan'):.4f} meV "
               f"(epoch {state['best_epoch']}); checkpoints in {out}")


@cli.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, multiple=True,
              help="Checkpoint folder (RUN/best); repeat it for an ensemble: H is the mean of their predicted H.")
@click.option("--dataset", required=True, help="Packed dataset folder (or name).")
@click.option("--split", default="test", show_default=True)
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Predictions store to write (.zarr).")
@click.option("--device", default="auto", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing predictions store.")
def predict(checkpoint, dataset, split, out, device, overwrite):
    """Write H = H0 + dH for every structure of SPLIT through materials_ham.write_predictions."""
    from .train import predict as run

    path = run(list(checkpoint), dataset, split, out, device=device, progress=sys.stderr.isatty(), overwrite=overwrite)
    click.echo(f"wrote {path}")


def main(argv=None) -> int:
    from materials_ham import MaterialsHamError

    try:
        cli.main(args=argv, prog_name="python -m baselines.nextham", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except MaterialsHamError as err:
        click.echo(f"error: {err}", err=True)
        return getattr(err, "exit_code", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
