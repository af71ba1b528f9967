"""Checkpoints as safetensors: weights, plus the model config and metrics as JSON in the metadata.

Loading parses the file's header itself before any tensor is touched and never unpickles, so a
pickle renamed `.safetensors` is refused with a message and its code never runs.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors_from_bytes
from safetensors.torch import save as save_tensors_to_bytes

from .config import ModelConfig, TrainConfig, config_to_dict, model_config_from_dict
from .errors import CheckpointError, ConfigError
from .models import VAE, build_model

FORMAT_TAG = "vae-explorer/1"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit


@dataclass
class Checkpoint:
    """A loaded model with what was saved beside it."""

    model: VAE
    model_config: ModelConfig
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    curve: list[dict] = field(default_factory=list)


# "MNIST train (/home/me/data)" -> "MNIST train (IDX files)"; "--data-dir /home/me/data" -> "--data-dir DIR"
_SOURCE_FOLDER = re.compile(r"\(([^()]*[/\\][^()]*)\)")
_DATA_DIR_FLAG = re.compile(r"(--data-dir[= ])(\S+)")


def without_machine_paths(metrics: dict) -> dict:
    """`metrics` with the folders of the machine that trained it replaced by placeholders: a
    checkpoint is shared, and its data source and command must not carry someone's paths."""
    if not isinstance(metrics, dict):
        return metrics
    cleaned = dict(metrics)
    if isinstance(cleaned.get("data"), str):
        cleaned["data"] = _SOURCE_FOLDER.sub("(IDX files)", cleaned["data"])
    if isinstance(cleaned.get("command"), str):
        cleaned["command"] = _DATA_DIR_FLAG.sub(r"\1DIR", cleaned["command"])
    return cleaned


def checkpoint_bytes(
    model: VAE,
    train_config: TrainConfig | dict | None = None,
    metrics: dict | None = None,
    curve: list[dict] | None = None,
) -> bytes:
    """The checkpoint as bytes (what `save_checkpoint` writes; the app offers it as a download)."""
    if isinstance(train_config, TrainConfig):
        train_config = config_to_dict(train_config)
    metadata = {
        "format": FORMAT_TAG,
        "model_config": json.dumps(config_to_dict(model.config)),
        "train_config": json.dumps(train_config or {}),
        "metrics": json.dumps(without_machine_paths(metrics or {})),
        "curve": json.dumps(curve or []),
    }
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    return save_tensors_to_bytes(tensors, metadata=metadata)


def save_checkpoint(path: str | Path, model: VAE, train_config=None, metrics=None, curve=None) -> Path:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(checkpoint_bytes(model, train_config, metrics, curve))
    partial.replace(path)
    return path


def _describe_foreign(data: bytes) -> str:
    if data[:1] == b"\x80" or data[:2] in (b"(d", b"(l", b"}q", b"]q"):
        return "it is a Python pickle (e.g. torch.save output), which is never loaded because unpickling runs code"
    if data[:2] == b"PK":
        return "it is a zip archive (PyTorch's torch.save format), which is never loaded because it holds pickles"
    return "its header is not a safetensors header"


def read_header(data: bytes, name: str = "file") -> dict[str, Any]:
    """Parse and sanity-check a safetensors header without loading any tensor."""
    if len(data) < 8:
        raise CheckpointError(f"{name} is not a VAE Explorer checkpoint: only {len(data)} bytes")
    (length,) = struct.unpack("<Q", data[:8])
    if length == 0 or length > MAX_HEADER_BYTES or 8 + length > len(data):
        if 8 + length > len(data) and data[8:9] == b"{" and length <= MAX_HEADER_BYTES:
            raise CheckpointError(
                f"{name} is truncated: its header alone needs {8 + length} bytes, the file has {len(data)}"
            )
        raise CheckpointError(f"{name} is not a safetensors checkpoint: {_describe_foreign(data)}")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{name} is not a safetensors checkpoint: {_describe_foreign(data)}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{name} has a malformed safetensors header")
    end = 8 + length
    for tensor_name, info in header.items():
        if tensor_name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not offsets or len(offsets) != 2 or end + int(offsets[1]) > len(data):
            raise CheckpointError(
                f"{name} is truncated: tensor {tensor_name!r} runs past the end of the file "
                f"({len(data)} bytes)"
            )
    return header


def load_checkpoint(source: str | Path | bytes, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint from a path or from bytes (an upload). Raises CheckpointError with a reason."""
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), "the uploaded file"
    else:
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        data, name = path.read_bytes(), str(path)
    header = read_header(data, name)
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != FORMAT_TAG:
        raise CheckpointError(
            f"{name} is a safetensors file but not a VAE Explorer checkpoint (no '{FORMAT_TAG}' "
            "format tag in its metadata); train one with `python -m vae_core train`"
        )
    try:
        model_config = model_config_from_dict(json.loads(metadata["model_config"]))
        train_config = json.loads(metadata.get("train_config", "{}"))
        metrics = without_machine_paths(json.loads(metadata.get("metrics", "{}")))
        curve = json.loads(metadata.get("curve", "[]"))
    except (KeyError, json.JSONDecodeError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{name} has unreadable metadata: {exc}") from None
    try:
        tensors = load_tensors_from_bytes(data)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{name} could not be read as safetensors: {exc}") from None
    model = build_model(model_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k}: file {tuple(tensors[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {unexpected[:3]}" if unexpected else "",
                f"wrong shapes {wrong[:3]}" if wrong else "",
            )
            if part
        )
        raise CheckpointError(f"{name} does not fit its own config ({model_config.describe()}): {details}")
    model.load_state_dict(tensors)
    model.to(map_location).eval()
    return Checkpoint(model, model_config, train_config, metrics, curve)
