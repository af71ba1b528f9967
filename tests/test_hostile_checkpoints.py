"""Hostile checkpoints: every field of every file crafted by hand (struct + json), each class refused
with a CheckpointError that says what was wrong, before any model is built or any tensor read.

A case takes a valid small checkpoint apart into (header, data section), changes one thing and puts
it back together; `expect` is a fragment of the message the visitor sees.
"""

from __future__ import annotations

import io
import json
import pickle
import random
import struct
import time
import zipfile

import pytest
import torch
from markdown_messages import shown

import vae_core.checkpoint as checkpoint_module
from vae_core import CheckpointError, ModelConfig, TrainConfig, build_model, load_checkpoint
from vae_core.checkpoint import MAX_CURVE_ROWS, MAX_HEADER_BYTES, WEIGHT_BYTES, checkpoint_bytes
from vae_core.model_kinds import parameter_count

SMALL = ModelConfig(latent_dim=2, hidden=(8,))  # 13,396 weights, 54 kB


def _valid() -> bytes:
    model = build_model(SMALL)
    step = {"kind": "step", "step": 20, "epoch": 0.1, "recon": -200.0, "kl": 3.0, "elbo": -203.0}
    epoch = {"kind": "epoch", "step": 40, "epoch": 1.0, "recon": -150.0, "kl": 4.0, "elbo": -154.0}
    curve = [
        {**step, "validation": None},
        {**epoch, "validation": {"recon": -151.0, "kl": 4.0, "elbo": -155.0}},
    ]
    metrics = {
        "epochs": 1.0,
        "train_seconds": 3.5,
        "command": "python -m vae_core train",
        "data": "MNIST",
        "validation": {"elbo": -155.0},
        "test": {"elbo": -150.0, "nll": 140.0, "n": 100, "k": 50, "binarization": "dynamic"},
    }
    return checkpoint_bytes(model, TrainConfig(epochs=1), metrics, curve)


VALID = _valid()


def _split(data: bytes = VALID) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def _join(header: dict | bytes, body: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _edit(change) -> bytes:
    """VALID with `change(header, body)` applied; it edits the header in place or returns a new body."""
    header, body = _split()
    new_body = change(header, body)
    return _join(header, new_body if isinstance(new_body, bytes) else body)


_REMOVE = object()


def _meta(key: str, value) -> bytes:
    """VALID with one metadata entry replaced (a str as is, anything else as its JSON), or removed."""

    def change(header, _body):
        if value is _REMOVE:
            del header["__metadata__"][key]
        else:
            header["__metadata__"][key] = value if isinstance(value, str) else json.dumps(value)

    return _edit(change)


def _config(**fields) -> bytes:
    header, _ = _split()
    config = json.loads(header["__metadata__"]["model_config"])
    return _meta("model_config", {**config, **fields})


def _train_config(**fields) -> bytes:
    return _meta("train_config", {**json.loads(_split()[0]["__metadata__"]["train_config"]), **fields})


def _metrics(**fields) -> bytes:
    return _meta("metrics", {**json.loads(_split()[0]["__metadata__"]["metrics"]), **fields})


def _tensor(name: str, **fields) -> bytes:
    return _edit(lambda header, _body: header[name].update(fields))


_ORDER = sorted((info["data_offsets"], name) for name, info in _split()[0].items() if name != "__metadata__")
FIRST_IN_FILE, LAST_IN_FILE = _ORDER[0][1], _ORDER[-1][1]


def _overlap(header, _body):
    # two tensors of the same size, the later one pointed at the earlier one's bytes
    sizes = {}
    for (begin, end), name in _ORDER:
        if end - begin in sizes:
            header[name]["data_offsets"] = header[sizes[end - begin]]["data_offsets"]
            return
        sizes[end - begin] = name
    raise AssertionError("no two tensors of one size")


def _gap(header, body):
    begin, end = header[LAST_IN_FILE]["data_offsets"]
    header[LAST_IN_FILE]["data_offsets"] = [begin + 8, end + 8]
    return body[:begin] + bytes(8) + body[begin:]


def _missing(header, body):
    begin, _ = header.pop(LAST_IN_FILE)["data_offsets"]
    return body[:begin]


def _extra(header, body):
    header["bonus.weight"] = {"dtype": "F32", "shape": [2], "data_offsets": [len(body), len(body) + 8]}
    return body + bytes(8)


def _transposed(header, _body):
    header["encoder.net.0.weight"]["shape"] = header["encoder.net.0.weight"]["shape"][::-1]


TORCH_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BOOL": torch.bool,
                "U8": torch.uint8, "I32": torch.int32, "I64": torch.int64}  # fmt: skip


def _weights(value: float, dtype: str = "F32"):
    """VALID with the first tensor in the file stored as `dtype` (its bytes too, so the sizes agree)
    and its first value set to `value`."""

    def change(header, body):
        begin, end = header[FIRST_IN_FILE]["data_offsets"]
        values = torch.frombuffer(bytearray(body[begin:end]), dtype=torch.float32)
        values = values.to(TORCH_DTYPES[dtype])
        values[0] = value
        raw = values.numpy().tobytes()
        header[FIRST_IN_FILE]["dtype"] = dtype
        header[FIRST_IN_FILE]["data_offsets"] = [begin, begin + len(raw)]
        delta = len(raw) - (end - begin)
        for name, info in header.items():
            if name not in ("__metadata__", FIRST_IN_FILE) and info["data_offsets"][0] >= end:
                info["data_offsets"] = [info["data_offsets"][0] + delta, info["data_offsets"][1] + delta]
        return body[:begin] + raw + body[end:]

    return change


def _pickle() -> bytes:
    return pickle.dumps({"weights": [1.0, 2.0]})


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", _pickle())
    return buffer.getvalue()


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


HUGE_BUT_ALLOWED = {"hidden": [8000, 2000]}  # 44.6 M weights, 178 MB: allowed, but not in this file
assert parameter_count(ModelConfig(latent_dim=2, hidden=(8000, 2000))) > 40_000_000

# (id, file bytes, a fragment of the message)
CASES = [
    # the container
    ("empty file", b"", "only 0 bytes"),
    ("random bytes", random.Random(0).randbytes(4096), "not a safetensors"),
    ("pickle", _pickle(), "pickle"),
    ("zip", _zip(), "zip archive"),
    ("header length 0", struct.pack("<Q", 0) + b"{}", "not a safetensors"),
    ("header length past the end", struct.pack("<Q", 10_000) + b'{"a": 1}', "truncated"),
    ("header length over the limit", struct.pack("<Q", MAX_HEADER_BYTES + 1) + b"{" * 64, "limit"),
    ("header length 2**64-1", b"\xff" * 8 + b"{}", "limit"),
    ("header length shorter than the header", struct.pack("<Q", 40) + VALID[8:], "not valid JSON"),
    ("header not JSON", _join(b"{not json at all}", b""), "not valid JSON"),
    ("header not UTF-8", _join(b'{"\xff\xfe": 1}', b""), "not valid JSON"),
    ("header deeply nested", _join(('{"a": ' + _deep(100_000) + "}").encode(), b""), "nested too deeply"),
    ("header a list", _join(b"[1, 2, 3]", b""), "not a safetensors"),
    ("header repeats a key", _join(b'{"__metadata__": {}, "__metadata__": {"format": "x"}}', b""), "twice"),
    ("header a huge integer", _join(b'{"a": ' + b"9" * 5000 + b"}", b""), "not valid JSON"),
    # __metadata__
    ("metadata a list", _edit(lambda h, b: h.update(__metadata__=["format"])), "__metadata__ is a list"),
    ("metadata a string", _edit(lambda h, b: h.update(__metadata__="vae")), "__metadata__ is the text"),
    (
        "metadata value a number",
        _edit(lambda h, b: h["__metadata__"].update(format=1)),
        "metadata values are text",
    ),
    (
        "metadata value an object",
        _edit(lambda h, b: h["__metadata__"].update(curve={"a": 1})),
        "is an object",
    ),
    (
        "metadata too many keys",
        _edit(lambda h, b: h["__metadata__"].update({f"k{i}": "" for i in range(40)})),
        "metadata entries",
    ),  # fmt: skip
    ("metadata value too long", _meta("notes", "x" * 70_000), "70,000 characters"),
    ("no metadata", _edit(lambda h, b: h.pop("__metadata__")), "not a VAE Explorer checkpoint"),
    ("no format tag", _meta("format", _REMOVE), "not a VAE Explorer checkpoint"),
    ("wrong format tag", _meta("format", "vae-explorer/999"), "not a VAE Explorer checkpoint"),
    # model_config
    ("model_config missing", _meta("model_config", _REMOVE), "no model_config"),
    (
        "model_config not JSON",
        _meta("model_config", "{kind: mlp"),
        "model_config entry in its metadata: it is not valid JSON",
    ),
    ("model_config a list", _meta("model_config", [1, 2]), "must be a JSON object"),
    ("model_config deeply nested", _meta("model_config", _deep(2000)), "nested too deeply"),
    ("model_config too long", _meta("model_config", " " * 5000), "5,000 characters"),
    ("latent 2.5", _config(latent_dim=2.5), "latent_dim must be a whole number"),
    ("latent true", _config(latent_dim=True), "latent_dim must be a whole number"),
    ("latent 0", _config(latent_dim=0), "latent_dim must be between"),
    ("num_classes 0", _config(num_classes=0), "num_classes must be between"),
    ("hidden width 10**30", _config(hidden=[10**30]), "between"),
    ("hidden not a list", _config(hidden="512"), "hidden must be a list"),
    ("network over the parameter limit", _config(hidden=[16_384] * 8), "limit is 50,000,000"),
    ("unknown model kind", _config(kind="transformer"), "model kind"),
    ("image_size 28.0", _config(image_size=28.0), "image_size"),
    ("conditional 'yes'", _config(conditional="yes"), "conditional must be"),
    ("unknown model setting", _config(dropout=0.5), "unknown model settings"),
    ("model setting missing", _meta("model_config", {"kind": "mlp"}), "model settings missing"),
    # train_config
    (
        "train_config not JSON",
        _meta("train_config", "{"),
        "train_config entry in its metadata: it is not valid JSON",
    ),
    ("train_config a list", _meta("train_config", []), "must be a JSON object"),
    ("train_config unknown setting", _train_config(momentum=0.9), "unknown training settings"),
    ("train_config epochs NaN", _meta("train_config", '{"epochs": NaN}'), "finite"),
    ("train_config epochs 10**400", _train_config(epochs=10**400), "invalid train_config"),
    ("train_config batch 1.5", _train_config(batch_size=1.5), "whole number"),
    ("train_config objective a list", _train_config(objective=["elbo"]), "must be a string"),
    ("train_config too long", _train_config(extra={"x": "y" * 70_000}), "characters"),
    # metrics
    ("metrics not JSON", _meta("metrics", "{'a': 1}"), "metrics entry in its metadata: it is not valid JSON"),
    ("metrics a list", _meta("metrics", [1, 2]), "they are a list"),
    ("metrics deeply nested", _meta("metrics", _deep(20_000)), "nested too deeply"),
    ("metrics epochs text", _metrics(epochs="ten"), "'epochs' must be a number"),
    ("metrics train_seconds null", _metrics(train_seconds=None), "'train_seconds' must be a number"),
    ("metrics test a list", _metrics(test=[1]), "'test' must be an object"),
    (
        "metrics test nll text",
        _metrics(test={"nll": "[Log in](https://evil.example)"}),
        "'nll' must be a number",
    ),
    ("metrics value NaN", _meta("metrics", '{"train_elbo": NaN}'), "finite"),
    ("metrics value 1e999", _meta("metrics", '{"train_elbo": 1e999}'), "finite"),
    ("metrics integer 10**30", _metrics(steps=10**30), "below 2**63"),
    ("metrics nested two deep", _metrics(validation={"a": {"b": 1}}), "is an object"),
    ("metrics too many keys", _meta("metrics", {f"m{i}": 1 for i in range(100)}), "100 entries"),
    ("metrics long list", _metrics(losses=[1.0] * 5000), "at most 1000"),
    ("metrics text with a line break", _metrics(data="MNIST\n- **Owner:** me"), "line break"),
    ("metrics long text", _metrics(command="x" * 3000), "3,000 characters"),
    ("metrics too long", _meta("metrics", {"command": "x" * 70_000}), "characters"),
    # curve
    ("curve an object", _meta("curve", {"kind": "step"}), "not a list of rows"),
    ("curve too many rows", _meta("curve", [{}] * (MAX_CURVE_ROWS + 1)), "rows; the limit"),
    ("curve row a number", _meta("curve", [1]), "row 0 is the number 1"),
    (
        "curve step row without elbo",
        _meta("curve", [{"kind": "step", "epoch": 1}]),
        "'elbo' must be a number",
    ),
    ("curve epoch text", _meta("curve", [{"kind": "epoch", "epoch": "1", "elbo": -90}]), "'epoch' must be"),
    (
        "curve validation text",
        _meta("curve", [{"kind": "epoch", "epoch": 1, "elbo": 1, "validation": "x"}]),
        "validation is the text",
    ),  # fmt: skip
    (
        "curve validation without elbo",
        _meta("curve", [{"kind": "epoch", "epoch": 1, "elbo": 1, "validation": {"kl": 1}}]),
        "no 'elbo'",
    ),  # fmt: skip
    ("curve value infinite", _meta("curve", '[{"kind": "step", "epoch": 1, "elbo": -Infinity}]'), "must be"),
    ("curve too long", _meta("curve", [{"kind": "note", "text": "x" * 1000}] * 3000), "characters"),
    # tensor entries
    *[
        (f"dtype {dtype}", _tensor(FIRST_IN_FILE, dtype=dtype), f"holds {dtype!r} values")
        for dtype in ("BOOL", "I64", "U8", "I8", "I32", "F8_E4M3", "float32", "")
    ],
    *[
        (f"dtype {dtype}, bytes of that type", _edit(_weights(1, dtype)), f"holds {dtype!r} values")
        for dtype in TORCH_DTYPES
        if dtype not in WEIGHT_BYTES
    ],  # fmt: skip
    ("dtype a number", _tensor(FIRST_IN_FILE, dtype=4), "holds the number 4 values"),
    ("entry not an object", _edit(lambda h, b: h.update({FIRST_IN_FILE: [0, 1]})), "must be an object"),
    (
        "entry with an extra key",
        _tensor(FIRST_IN_FILE, device="cuda"),
        "exactly dtype, shape and data_offsets",
    ),
    ("shape not a list", _tensor(FIRST_IN_FILE, shape="8x784"), "malformed shape"),
    ("shape negative", _tensor(FIRST_IN_FILE, shape=[-8, -784]), "malformed shape"),
    ("shape of booleans", _tensor(FIRST_IN_FILE, shape=[True, 8]), "malformed shape"),
    ("shape rank 9", _tensor(FIRST_IN_FILE, shape=[1] * 9), "malformed shape"),
    ("shape of 10**12 values", _tensor(FIRST_IN_FILE, shape=[10**6, 10**6]), "would hold 1,000,000,000,000"),
    ("shape of 4000-digit sizes", _tensor(FIRST_IN_FILE, shape=[0, 10**4000]), "malformed shape"),
    ("shape of long text", _tensor(FIRST_IN_FILE, shape=["x" * 100_000]), "malformed shape"),
    ("offsets of 4000 digits", _tensor(FIRST_IN_FILE, data_offsets=[10**3999, 10**4000]), "over 10**18"),
    ("offsets negative", _tensor(FIRST_IN_FILE, data_offsets=[-4, 0]), "impossible data_offsets"),
    ("offsets reversed", _tensor(FIRST_IN_FILE, data_offsets=[8, 4]), "impossible data_offsets"),
    ("offsets end 2**64", _tensor(FIRST_IN_FILE, data_offsets=[0, 2**64]), "runs past the end"),
    ("offsets both past 2**64", _tensor(FIRST_IN_FILE, data_offsets=[2**64, 2**64 + 4]), "runs past the end"),
    ("offsets three numbers", _tensor(FIRST_IN_FILE, data_offsets=[0, 4, 8]), "malformed data_offsets"),
    ("offsets floats", _tensor(FIRST_IN_FILE, data_offsets=[0.0, 4.0]), "malformed data_offsets"),
    ("offsets text", _tensor(FIRST_IN_FILE, data_offsets="0-4"), "malformed data_offsets"),
    ("offsets disagree with the shape", _tensor(FIRST_IN_FILE, shape=[8, 700]), "data_offsets cover"),
    ("offsets overlap", _edit(_overlap), "overlap"),
    ("a gap between tensors", _edit(_gap), "unused bytes"),
    ("bytes after the last tensor", VALID + bytes(16), "16 bytes after its last tensor"),
    ("truncated data", VALID[:-100], "truncated"),
    (
        "too many tensors",
        _edit(
            lambda h, b: h.update(
                {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(70)}
            )
        ),
        "tensors; a VAE has at most",
    ),  # fmt: skip
    (
        "tensor name too long",
        _edit(lambda h, b: h.update({"n" * 300: h.pop(FIRST_IN_FILE)})),
        "300 characters",
    ),
    # tensors against the config
    ("a tensor missing", _edit(_missing), "missing"),
    ("an extra tensor", _edit(_extra), "unexpected"),
    ("a shape that does not fit", _edit(_transposed), "wrong shapes"),
    ("weights for another config", _config(latent_dim=3), "wrong shapes"),
    ("a huge config with small weights", _config(**HUGE_BUT_ALLOWED), "does not fit its own config"),
    # the weights themselves
    ("a NaN weight", _edit(_weights(float("nan"))), "NaN or infinite"),
    ("an infinite weight", _edit(_weights(float("inf"))), "NaN or infinite"),
    ("an infinite F16 weight", _edit(_weights(float("inf"), "F16")), "NaN or infinite"),
    ("an F64 weight beyond float32", _edit(_weights(1e300, "F64")), "beyond float32's range"),
]
READS_WEIGHTS = {
    "a NaN weight",
    "an infinite weight",
    "an infinite F16 weight",
    "an F64 weight beyond float32",
}


@pytest.fixture
def spies(monkeypatch):
    """Record every tensor read from a file and every model the loader builds (and where)."""
    seen = {"reads": 0, "devices": []}
    read, vae = checkpoint_module.load_tensors_from_bytes, checkpoint_module.VAE

    def counting_read(data):
        seen["reads"] += 1
        return read(data)

    def recording_vae(config):
        model = vae(config)
        seen["devices"].extend(p.device.type for p in model.parameters())
        return model

    monkeypatch.setattr(checkpoint_module, "load_tensors_from_bytes", counting_read)
    monkeypatch.setattr(checkpoint_module, "VAE", recording_vae)
    return seen


@pytest.mark.parametrize(("data", "expect"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_hostile_file_is_refused_with_a_reason_before_anything_is_allocated(data, expect, spies, request):
    started = time.perf_counter()
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(data)
    message = str(refused.value)
    assert expect in message, message
    assert message.startswith("the uploaded file") and len(message) < 700, message
    assert set(spies["devices"]) <= {"meta"}  # a model of the file's config is only ever a shape list
    if request.node.callspec.id not in READS_WEIGHTS:
        assert spies["reads"] == 0, "tensors were read from a file the header checks should refuse"
    assert time.perf_counter() - started < 2.0


def test_the_valid_file_these_cases_start_from_loads():
    loaded = load_checkpoint(VALID)
    assert loaded.model_config == SMALL and loaded.metrics["test"]["n"] == 100 and len(loaded.curve) == 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_weights_saved_in_another_float_type_load_as_float32(dtype):
    from safetensors.torch import save

    header, _ = _split()
    model = build_model(SMALL)
    tensors = {k: v.to(dtype) for k, v in model.state_dict().items()}
    loaded = load_checkpoint(save(tensors, metadata=header["__metadata__"]))
    for name, value in loaded.model.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, tensors[name].float(), rtol=0, atol=0)


def test_a_file_too_big_to_be_a_checkpoint_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "MAX_CHECKPOINT_BYTES", len(VALID) - 1)
    path = tmp_path / "big.safetensors"
    path.write_bytes(VALID)
    monkeypatch.setattr(type(path), "read_bytes", lambda self: pytest.fail("a too-big file was read"))
    with pytest.raises(CheckpointError, match="no checkpoint can exceed"):
        load_checkpoint(path)


def test_an_unforeseen_failure_inside_loading_is_a_checkpoint_error(monkeypatch):
    def explode(_config):
        raise MemoryError("simulated")

    monkeypatch.setattr(checkpoint_module, "_model_on_meta", explode)
    with pytest.raises(CheckpointError, match="MemoryError"):
        load_checkpoint(VALID)


def test_every_shipped_checkpoint_passes_the_checks():
    from pathlib import Path

    shipped = sorted((Path(__file__).resolve().parents[1] / "pretrained").glob("*.safetensors"))
    assert len(shipped) >= 5
    for path in shipped:
        loaded = load_checkpoint(path)
        assert loaded.curve and loaded.metrics["test"]["nll"] > 0 and loaded.train_config["epochs"] > 0


# --- through the app's upload ----------------------------------------------------------------------


@pytest.fixture
def session():
    import streamlit as st

    st.session_state.clear()
    yield st.session_state
    st.session_state.clear()


APP_REASONS = {"does not fit its own config": "this server takes models of up to 5,000,000"}


@pytest.mark.parametrize(("data", "expect"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_the_app_refuses_each_hostile_upload_with_one_inert_message(data, expect, session):
    from explorer.ui.resources import session_models
    from explorer.ui.sidebar import SELECTED_MODEL, _register_upload

    ok, message = _register_upload("[Log in](https://evil.example).safetensors", data)
    assert not ok
    expect = APP_REASONS.get(expect, expect)  # the server's parameter budget is checked first
    text = shown(message)  # the visitor's text only in code spans: no live link
    assert text.startswith("[Log in](https://evil.example).safetensors was not loaded: ")
    assert expect in text and "\n" not in message  # one line of text
    assert session_models() == {} and SELECTED_MODEL not in session


def test_visitor_text_quoted_from_the_file_is_inert_in_the_message(session):
    from explorer.ui.sidebar import _register_upload

    link = "[Log in](https://evil.example)"
    data = _edit(lambda h, b: h.update({link: {**h.pop(FIRST_IN_FILE), "dtype": "BOOL"}}))
    ok, message = _register_upload("m.safetensors", data)
    assert not ok and "BOOL" in shown(message) and link in shown(message)


def test_a_valid_upload_still_loads_and_is_selected(session):
    from explorer.ui.resources import session_models
    from explorer.ui.sidebar import SELECTED_MODEL, _register_upload

    ok, message = _register_upload("small.safetensors", VALID)
    assert ok and "784-8-2 MLP VAE" in message
    (key,) = session_models()
    assert session[SELECTED_MODEL] == key and session_models()[key].name == "small"


def test_a_long_upload_name_is_shortened_in_the_message_and_the_picker(session):
    from explorer.ui.resources import session_models
    from explorer.ui.sidebar import MAX_SHOWN_NAME_CHARS, _register_upload

    name = "m" * 5000 + ".safetensors"
    ok, message = _register_upload(name, b"junk")
    assert not ok and len(message) < 1000
    ok, _ = _register_upload(name, VALID)
    assert ok and len(next(iter(session_models().values())).name) <= MAX_SHOWN_NAME_CHARS
