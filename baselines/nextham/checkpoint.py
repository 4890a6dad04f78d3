"""Checkpoints that are safe to load: weights in safetensors, state in JSON, optimizer state
through ``torch.load(weights_only=True)``.  Written to a temporary folder, then renamed.

A checkpoint folder holds ``model.safetensors``, ``checkpoint.json`` (model config, slot table,
training config, epoch, step, best validation score, history) and ``optimizer.pt``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from materials_ham import FormatError
from materials_ham.atomic import atomic_directory, read_json_object

from .encoding import SlotTable
from .model import ModelConfig, NextHAM, build_model

FORMAT = "materials-ham/nextham-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, model: NextHAM, state: dict, optimizer=None, scheduler=None) -> Path:
    """Write ``path`` (a folder) atomically; ``state`` must be JSON-serialisable."""
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model.cfg.to_dict(),
            "slots": model.table.to_dict(), **state}
    with atomic_directory(Path(path)) as tmp:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / "model.safetensors"))
        (tmp / "checkpoint.json").write_text(json.dumps(meta, indent=1))
        if optimizer is not None:
            torch.save({"optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None},
                       tmp / "optimizer.pt")
    return Path(path)


def load_checkpoint(path: str | os.PathLike, device="cpu", dtype: torch.dtype | None = None) -> tuple[NextHAM, dict]:
    """(model, metadata) from a checkpoint folder (in ``dtype``, default: the training dtype);
    clear errors for anything else."""
    path = Path(path)
    meta = read_json_object(path / "checkpoint.json")
    if meta.get("format") != FORMAT:
        raise FormatError(f"not a NextHAM checkpoint (format {meta.get('format')!r})", subject=str(path))
    if meta.get("format_version") != FORMAT_VERSION:
        raise FormatError(f"checkpoint format version {meta.get('format_version')} is not {FORMAT_VERSION}",
                          subject=str(path))
    try:
        if dtype is None:
            dtype = torch.float64 if meta.get("train", {}).get("dtype") == "float64" else torch.float32
        model = build_model(ModelConfig.from_dict(meta["model"]), SlotTable.from_dict(meta["slots"]), dtype)
        weights = load_file(str(path / "model.safetensors"), device="cpu")
        # older checkpoints hold output heads for parts the config leaves out (free correction
        # off): built zero, never used, so never trained; a non-zero one is a mismatch
        have = model.state_dict()
        unused = {k.rsplit(".", 1)[0] for k, v in weights.items()
                  if ".head." in k and k.endswith(".weight") and k not in have and not v.any()}
        weights = {k: v for k, v in weights.items() if k.rsplit(".", 1)[0] not in unused}
        model.load_state_dict(weights)
    except FileNotFoundError as err:
        raise FormatError(f"missing {Path(err.filename).name}", subject=str(path)) from None
    except (KeyError, ValueError, RuntimeError) as err:
        raise FormatError(f"checkpoint does not match the model ({type(err).__name__}: {str(err)[:300]})",
                          subject=str(path)) from None
    return model.to(device), meta


def load_optimizer_state(path: str | os.PathLike) -> dict | None:
    f = Path(path) / "optimizer.pt"
    return torch.load(f, map_location="cpu", weights_only=True) if f.exists() else None
