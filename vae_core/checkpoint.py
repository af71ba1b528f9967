"""Checkpoints as safetensors: weights, plus the model config and metrics as JSON in the metadata.

A checkpoint may come from anyone (the app takes uploads), so loading trusts nothing in it:
the header is parsed and checked field by field (dtypes, shapes, byte ranges, metadata types and
sizes), the tensors it lists are compared with those its model config needs (worked out on the
meta device, which allocates nothing), and only then are the weights read; NaN or infinite
weights are refused. Nothing is ever unpickled, so a pickle renamed `.safetensors` is refused
with a message and its code never runs. Every refusal is a CheckpointError saying why.

Over 400 lines on purpose: saving is a few dozen; the rest is the one validator of files from
strangers, kept in one module so that every check can be read (and audited) together.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors_from_bytes
from safetensors.torch import save as save_tensors_to_bytes

from .config import (
    MAX_PARAMETERS,
    ModelConfig,
    TrainConfig,
    config_to_dict,
    is_whole_number,
    model_config_from_dict,
    parameter_count,
    train_config_from_dict,
    upgrade_train_settings,
)
from .errors import CheckpointError, ConfigError
from .models import VAE

FORMAT_TAG = "vae-explorer/1"

# Bounds on what a file may hold, all checked before anything is allocated from it. A shipped
# checkpoint's header is under 100 kB (mostly its training curve of ~450 rows).
MAX_HEADER_BYTES = 4 * 2**20
WEIGHT_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}  # safetensors dtype -> bytes per value
# The largest file a loadable checkpoint can be: MAX_PARAMETERS float64 weights and a full header.
MAX_CHECKPOINT_BYTES = 8 + MAX_HEADER_BYTES + MAX_PARAMETERS * max(WEIGHT_BYTES.values())
MAX_TENSORS = 64  # a VAE has 8 to 16
MAX_TENSOR_NAME_CHARS = 200
MAX_TENSOR_RANK = 8  # conv weights have 4 dimensions
MAX_METADATA_KEYS = 32
METADATA_LIMITS = {"format": 64, "model_config": 4096, "train_config": 64 * 2**10, "curve": 2 * 2**20}
MAX_METADATA_CHARS = 64 * 2**10  # metrics and any other entry
MAX_ENTRIES = 64  # keys of metrics, of an object inside them, of a curve row
MAX_LIST_ITEMS = 1000  # a list of numbers among the metrics
MAX_TEXT_CHARS = 2000  # a string among the metrics (the training command is the longest)
MAX_CURVE_ROWS = 5000  # the trainer keeps <= 400 step rows plus one per epoch
# metrics["test"] entries the model card formats as numbers (`evaluate` also stores text ones)
TEST_FIGURES = ("elbo", "recon", "kl", "nll", "n", "k", "binarization_seed",
                "nll_quadrature", "nll_importance", "nll_quadrature_n")  # fmt: skip


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


def _quote(value: Any, limit: int = 60) -> str:
    """A value from the file as a short repr for a message (it is the sender's text, of any size)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shape_or_kind(value: Any) -> str:
    return _quote(value, 80) if isinstance(value, list) else _kind(value)


def _count(n: int) -> str:
    """A count for a message; a file can hold integers too long to print (Python refuses 4300+ digits)."""
    return f"{n:,}" if n < 10**18 else "over 10**18"


def _kind(value: Any) -> str:
    """What JSON gave instead: 'a list', 'the number 2.5', 'null'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        text = repr(value)
        return f"the number {text if len(text) <= 20 else text[:19] + '…'}"
    if isinstance(value, str):
        return f"the text {_quote(value)}"
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _is_finite_number(value: Any) -> bool:
    """A number every consumer can format: no bool, no NaN/inf, no int too big for a float."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= 2**63
    return isinstance(value, float) and math.isfinite(value)


class _RepeatedKey(ValueError):
    pass


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would keep the last of two equal keys silently: a file could then mean two things
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _RepeatedKey(f"the key {_quote(repeated)} appears twice in one object")
    return result


def _parse_json(text: str | bytes, what: str, name: str) -> Any:
    """JSON from the file; every way it can fail (bad syntax or encoding, nesting deep enough to
    exhaust the parser's recursion, integers too long to convert) is one CheckpointError."""
    try:
        return json.loads(text, object_pairs_hook=_object_without_repeats)
    except RecursionError:
        raise CheckpointError(f"{name} has a malformed {what}: its JSON is nested too deeply") from None
    except _RepeatedKey as exc:
        raise CheckpointError(f"{name} has a malformed {what}: {exc}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digits limit
        reason = str(exc)[:120]
        raise CheckpointError(f"{name} has a malformed {what}: it is not valid JSON ({reason})") from None


def _describe_foreign(data: bytes) -> str:
    if data[:1] == b"\x80" or data[:2] in (b"(d", b"(l", b"}q", b"]q"):
        return "it is a Python pickle (e.g. torch.save output), which is never loaded because unpickling runs code"
    if data[:2] == b"PK":
        return "it is a zip archive (PyTorch's torch.save format), which is never loaded because it holds pickles"
    return "its header is not a safetensors header"


def read_header(data: bytes, name: str = "file") -> dict[str, Any]:
    """Parse and check a safetensors header without loading any tensor.

    Checked: the header's length and JSON; each tensor's dtype (floating point only), shape
    (bounded rank and size) and byte range (inside the data section, of the size its shape and
    dtype need, the ranges tiling the section without overlap); `__metadata__` an object of
    bounded text values. Returns the header as parsed.
    """
    if len(data) < 8:
        raise CheckpointError(f"{name} is not a VAE Explorer checkpoint: only {len(data)} bytes")
    (length,) = struct.unpack("<Q", data[:8])
    looks_like_header = data[8:9] == b"{"
    if length == 0 or not looks_like_header:
        raise CheckpointError(f"{name} is not a safetensors checkpoint: {_describe_foreign(data)}")
    if length > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{name} is not a loadable checkpoint: its header claims {length:,} bytes; "
            f"the limit is {MAX_HEADER_BYTES:,} (a real header is under 100 kB)"
        )
    if 8 + length > len(data):
        raise CheckpointError(
            f"{name} is truncated: its header alone needs {8 + length} bytes, the file has {len(data)}"
        )
    header = _parse_json(data[8 : 8 + length], "safetensors header", name)
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{name} has a malformed safetensors header: it is {_kind(header)}, not an object"
        )
    _check_metadata_shape(header.get("__metadata__", {}), name)
    entries = [(key, info) for key, info in header.items() if key != "__metadata__"]
    if len(entries) > MAX_TENSORS:
        raise CheckpointError(f"{name} lists {len(entries)} tensors; a VAE has at most {MAX_TENSORS}")
    data_size = len(data) - 8 - length
    ranges = [_check_tensor_entry(key, info, data_size, name) for key, info in entries]
    _check_ranges_tile(ranges, data_size, name)
    return header


def _check_metadata_shape(metadata: Any, name: str) -> None:
    if not isinstance(metadata, dict):
        raise CheckpointError(
            f"{name} has a malformed safetensors header: __metadata__ is {_kind(metadata)}, "
            "not an object of text values"
        )
    if len(metadata) > MAX_METADATA_KEYS:
        raise CheckpointError(
            f"{name} has {len(metadata)} metadata entries; the limit is {MAX_METADATA_KEYS}"
        )
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise CheckpointError(
                f"{name} has a malformed safetensors header: metadata {_quote(key)} is {_kind(value)}; "
                "safetensors metadata values are text"
            )
        limit = METADATA_LIMITS.get(key, MAX_METADATA_CHARS)
        if len(value) > limit:
            raise CheckpointError(
                f"{name} has a metadata entry {_quote(key)} of {len(value):,} characters; "
                f"the limit is {limit:,}"
            )


def _check_tensor_entry(tensor: str, info: Any, data_size: int, name: str) -> tuple[int, int, str]:
    """One header entry's dtype, shape and byte range checked; returns (begin, end, tensor)."""
    label = _quote(tensor)
    if len(tensor) > MAX_TENSOR_NAME_CHARS:
        raise CheckpointError(f"{name} has a tensor name of {len(tensor):,} characters: {label}")
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        got = _quote(sorted(info), 80) if isinstance(info, dict) else _kind(info)
        raise CheckpointError(
            f"{name} has a malformed safetensors header: tensor {label} must be an object with "
            f"exactly dtype, shape and data_offsets, got {got}"
        )
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in WEIGHT_BYTES:  # also refuses non-strings
        shown = _quote(dtype) if isinstance(dtype, str) else _kind(dtype)
        raise CheckpointError(
            f"{name}: tensor {label} holds {shown} values; a VAE's weights are floating point "
            f"({', '.join(WEIGHT_BYTES)}), and other types are refused rather than converted"
        )
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_TENSOR_RANK
        or not all(is_whole_number(n) and 0 <= n <= MAX_PARAMETERS for n in shape)
    ):
        raise CheckpointError(
            f"{name}: tensor {label} has a malformed shape, {_shape_or_kind(shape)}; a shape is a list "
            f"of at most {MAX_TENSOR_RANK} whole numbers from 0 to {MAX_PARAMETERS:,}"
        )
    elements = math.prod(shape)
    if elements > MAX_PARAMETERS:
        raise CheckpointError(
            f"{name}: tensor {label} would hold {_count(elements)} values; "
            f"a model may have {MAX_PARAMETERS:,} in all"
        )
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(is_whole_number(n) for n in offsets)):
        raise CheckpointError(
            f"{name}: tensor {label} has malformed data_offsets, {_shape_or_kind(offsets)}; "
            "they are two whole numbers [begin, end]"
        )
    begin, end = offsets
    if not 0 <= begin <= end:
        raise CheckpointError(
            f"{name}: tensor {label} has impossible data_offsets [{_quote(begin, 24)}, {_quote(end, 24)}] "
            "(0 <= begin <= end is required)"
        )
    if end > data_size:
        raise CheckpointError(
            f"{name} is truncated: tensor {label} runs past the end of the file "
            f"(its bytes end at {_count(end)}, the data section has {data_size:,})"
        )
    needed = elements * WEIGHT_BYTES[dtype]
    if end - begin != needed:
        raise CheckpointError(
            f"{name}: tensor {label} ({dtype}, shape {shape}) needs {needed:,} bytes but its "
            f"data_offsets cover {end - begin:,}"
        )
    return begin, end, tensor


def _check_ranges_tile(ranges: list[tuple[int, int, str]], data_size: int, name: str) -> None:
    """The byte ranges must tile the data section: no overlap (two tensors sharing bytes), no gap,
    nothing after the last tensor (as the safetensors format itself requires)."""
    position, previous = 0, None
    for begin, end, tensor in sorted(ranges):
        if begin < position:
            raise CheckpointError(
                f"{name}: the bytes of tensors {_quote(previous)} and {_quote(tensor)} overlap"
            )
        if begin > position:
            raise CheckpointError(
                f"{name} has {begin - position:,} unused bytes before tensor {_quote(tensor)}"
            )
        position, previous = end, tensor
    if position != data_size:
        raise CheckpointError(f"{name} has {data_size - position:,} bytes after its last tensor")


def _read_source(source: str | Path | bytes) -> tuple[bytes, str]:
    """The file's bytes and how messages name it; a file too big to be a checkpoint is not read."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        size, name = len(source), "the uploaded file"
    else:
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        size, name = path.stat().st_size, str(path)
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"{name} is {size / 2**20:,.0f} MB; no checkpoint can exceed "
            f"{MAX_CHECKPOINT_BYTES / 2**20:,.0f} MB ({MAX_PARAMETERS:,} float64 weights and a header)"
        )
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else path.read_bytes()
    return data, name


def load_checkpoint(
    source: str | Path | bytes, map_location: str | torch.device = "cpu", max_parameters: int = MAX_PARAMETERS
) -> Checkpoint:
    """Load a checkpoint from a path or from bytes (an upload). Raises CheckpointError with a reason;
    nothing is built or read from a file that fails a check. `max_parameters` (at most vae_core's
    own MAX_PARAMETERS) is a host's lower budget, checked on the model config before any weight is
    read: a public server sets the one its training runs have (ServerLimits.max_parameters)."""
    data, name = _read_source(source)
    try:
        return _load(data, name, map_location, min(max_parameters, MAX_PARAMETERS))
    except CheckpointError:
        raise
    except Exception as exc:  # a case the checks did not foresee is still a refusal with a reason
        raise CheckpointError(
            f"{name} could not be loaded ({type(exc).__name__}: {str(exc)[:200]}); "
            "it is not a readable VAE Explorer checkpoint"
        ) from exc


def _load(data: bytes, name: str, map_location: str | torch.device, max_parameters: int) -> Checkpoint:
    header = read_header(data, name)
    metadata = header.get("__metadata__", {})
    if metadata.get("format") != FORMAT_TAG:
        raise CheckpointError(
            f"{name} is a safetensors file but not a VAE Explorer checkpoint (no '{FORMAT_TAG}' "
            "format tag in its metadata); train one with `python -m vae_core train`"
        )
    model_config = _model_config(metadata, name)
    count = parameter_count(model_config)
    if count > max_parameters:
        raise CheckpointError(
            f"{name} holds a model of {count:,} parameters; this server takes models of up to "
            f"{max_parameters:,} (in float32, {4 * max_parameters / 1e6:,.0f} MB of weights), as its training does"
        )
    train_config = _train_config(metadata, name)
    metrics = without_machine_paths(_metrics(metadata, name))
    curve = _curve(metadata, name)
    model = _model_on_meta(model_config)
    _check_tensors_fit(header, model, name)
    # Only now are bytes turned into tensors: their names, dtypes and shapes are those expected.
    try:
        tensors = load_tensors_from_bytes(data)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{name} could not be read as safetensors: {str(exc)[:200]}") from None
    tensors = {key: tensor.to(torch.float32) for key, tensor in tensors.items()}
    _check_finite(tensors, header, name)
    model.load_state_dict(tensors, assign=True)  # the meta model takes the file's tensors as its weights
    model.to(map_location).eval()
    return Checkpoint(model, model_config, train_config, metrics, curve)


def _metadata_json(metadata: dict[str, str], key: str, default: str, name: str) -> Any:
    return _parse_json(metadata.get(key, default), f"{key} entry in its metadata", name)


def _model_config(metadata: dict[str, str], name: str) -> ModelConfig:
    if "model_config" not in metadata:
        raise CheckpointError(f"{name} has no model_config in its metadata: the architecture is unknown")
    try:
        return model_config_from_dict(_metadata_json(metadata, "model_config", "", name))
    except (ConfigError, TypeError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"{name} has an invalid model_config: {str(exc)[:300]}") from None


def _train_config(metadata: dict[str, str], name: str) -> dict[str, Any]:
    """The file's training settings as saved, after checking they make a valid TrainConfig. Strict
    (unknown settings refused): every checkpoint this code ever wrote holds exactly the known ones,
    or retired ones (`extra`) and old names ("static") that are read in today's names."""
    train_config = _metadata_json(metadata, "train_config", "{}", name)
    try:
        train_config_from_dict(train_config, strict=True)
    except (ConfigError, TypeError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"{name} has an invalid train_config: {str(exc)[:300]}") from None
    return upgrade_train_settings(train_config)


def _scalar_problem(value: Any) -> str | None:
    """Why `value` is not a number, true/false, null or one line of bounded text (None if it is)."""
    if value is None or isinstance(value, bool) or _is_finite_number(value):
        return None
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            return f"text of {len(value):,} characters (limit {MAX_TEXT_CHARS:,})"
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            return "text with a line break or control character"
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{_kind(value)} (numbers must be finite and below 2**63)"
    return f"{_kind(value)}, not a number, text, true/false or null"


def _metrics(metadata: dict[str, str], name: str) -> dict[str, Any]:
    """Metrics: an object of numbers, text, true/false, null, objects of those (validation and
    test figures) and short lists of numbers. The model card formats `epochs`, `train_seconds`
    and the `test` figures as numbers, so those must be numbers."""
    metrics = _metadata_json(metadata, "metrics", "{}", name)

    def refuse(reason: str) -> CheckpointError:
        return CheckpointError(f"{name} has invalid metrics: {reason}")

    if not isinstance(metrics, dict):
        raise refuse(f"they are {_kind(metrics)}, not an object")
    if len(metrics) > MAX_ENTRIES:
        raise refuse(f"{len(metrics)} entries; the limit is {MAX_ENTRIES}")
    for key, value in metrics.items():
        where = _quote(key)
        if isinstance(value, dict):
            if len(value) > MAX_ENTRIES:
                raise refuse(f"{where} has {len(value)} entries; the limit is {MAX_ENTRIES}")
            for inner, item in value.items():
                problem = _scalar_problem(item)
                if problem:
                    raise refuse(f"{where}.{_quote(inner)} is {problem}")
        elif isinstance(value, list):
            if len(value) > MAX_LIST_ITEMS or not all(_is_finite_number(v) for v in value):
                raise refuse(f"{where} must be a list of at most {MAX_LIST_ITEMS} finite numbers")
        else:
            problem = _scalar_problem(value)
            if problem:
                raise refuse(f"{where} is {problem}")
    for key in ("epochs", "train_seconds"):
        if key in metrics and not _is_finite_number(metrics[key]):
            raise refuse(f"{_quote(key)} must be a number, got {_kind(metrics[key])}")
    test = metrics.get("test")
    if test is not None:
        if not isinstance(test, dict):
            raise refuse(f"'test' must be an object of test-set figures, got {_kind(test)}")
        for key in TEST_FIGURES:
            if key in test and not _is_finite_number(test[key]):
                raise refuse(f"'test'.{_quote(key)} must be a number, got {_kind(test[key])}")
    return metrics


def _curve(metadata: dict[str, str], name: str) -> list[dict[str, Any]]:
    """The training curve: a bounded list of rows like the trainer's {kind, step, epoch, recon, kl,
    elbo, validation}; step and epoch rows need numeric `epoch` and `elbo` (the plot reads them), a
    row's validation is null or an object of numbers with an `elbo`."""
    curve = _metadata_json(metadata, "curve", "[]", name)

    def refuse(reason: str) -> CheckpointError:
        return CheckpointError(f"{name} has an invalid training curve: {reason}")

    if not isinstance(curve, list):
        raise refuse(f"it is {_kind(curve)}, not a list of rows")
    if len(curve) > MAX_CURVE_ROWS:
        raise refuse(f"{len(curve):,} rows; the limit is {MAX_CURVE_ROWS:,}")
    for i, row in enumerate(curve):
        if not isinstance(row, dict):
            raise refuse(f"row {i} is {_kind(row)}, not an object")
        if len(row) > MAX_ENTRIES:
            raise refuse(f"row {i} has {len(row)} entries; the limit is {MAX_ENTRIES}")
        for key, value in row.items():
            if key == "validation" and value is not None:
                if not isinstance(value, dict):
                    raise refuse(f"row {i}: validation is {_kind(value)}, not null or an object of numbers")
                if len(value) > MAX_ENTRIES or not all(_is_finite_number(v) for v in value.values()):
                    raise refuse(f"row {i}: validation must hold at most {MAX_ENTRIES} finite numbers")
                if value and "elbo" not in value:
                    raise refuse(f"row {i}: validation has no 'elbo'")
                continue
            problem = _scalar_problem(value)
            if problem:
                raise refuse(f"row {i}: {_quote(key)} is {problem}")
        if row.get("kind") in ("step", "epoch"):
            for key in ("epoch", "elbo"):
                if not _is_finite_number(row.get(key)):
                    raise refuse(
                        f"row {i} ({row['kind']}): {key!r} must be a number, got {_kind(row.get(key))}"
                    )
    return curve


def _model_on_meta(config: ModelConfig) -> VAE:
    """The config's model on the meta device: names, shapes and dtypes of every weight, no memory."""
    with torch.device("meta"):
        return VAE(config)


def _check_tensors_fit(header: dict[str, Any], model: VAE, name: str) -> None:
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    found = {key: tuple(info["shape"]) for key, info in header.items() if key != "__metadata__"}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [f"{k}: file {found[k]}, model {v}" for k, v in expected.items() if k in found and found[k] != v]
    if missing or unexpected or wrong:
        details = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing[:3])}" if missing else "",
                f"unexpected {', '.join(_quote(k) for k in unexpected[:3])}" if unexpected else "",
                f"wrong shapes {'; '.join(wrong[:3])}" if wrong else "",
            )
            if part
        )
        raise CheckpointError(f"{name} does not fit its own config ({model.config.describe()}): {details}")


def _check_finite(tensors: dict[str, torch.Tensor], header: dict[str, Any], name: str) -> None:
    for key, tensor in tensors.items():
        # One cheap pass: a float64 sum of float32 values cannot overflow (50 M x 3.4e38 < 1.8e308),
        # so it is finite exactly when every value is.
        if math.isfinite(tensor.sum(dtype=torch.float64).item()):
            continue
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            beyond = " or beyond float32's range" if header[key]["dtype"] == "F64" else ""
            raise CheckpointError(
                f"{name}: tensor {_quote(key)} has {bad:,} of {tensor.numel():,} weights that are NaN or "
                f"infinite{beyond}; the model it was saved from had diverged: retrain it "
                "(e.g. with a lower learning rate)"
            )
