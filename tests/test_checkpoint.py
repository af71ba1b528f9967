"""Checkpoints: exact round trips, and every wrong file refused with a reason and nothing executed."""

import json
import pickle
import struct

import pytest
import torch
from conftest import RunsCodeWhenUnpickled
from safetensors.torch import save_file

from vae_core import CheckpointError, ModelConfig, TrainConfig, build_model, load_checkpoint, save_checkpoint
from vae_core.checkpoint import checkpoint_bytes


def _model(latent_dim=3, conditional=False, kind="mlp"):
    torch.manual_seed(0)
    return build_model(
        ModelConfig(kind=kind, latent_dim=latent_dim, hidden=(32, 16), conditional=conditional)
    )


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_save_then_load_gives_back_the_same_weights_config_and_metrics(tmp_path, kind):
    model = _model(kind=kind, conditional=True)
    metrics = {"test": {"nll": 99.5}, "images_per_s": 1234.0}
    path = save_checkpoint(tmp_path / "m.safetensors", model, TrainConfig(epochs=3), metrics, [{"step": 1}])
    loaded = load_checkpoint(path)
    assert loaded.model_config == model.config
    assert loaded.metrics == metrics and loaded.train_config["epochs"] == 3 and loaded.curve == [{"step": 1}]
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    from_bytes = load_checkpoint(checkpoint_bytes(model))
    x, labels = torch.rand(2, 784), torch.tensor([1, 7])
    torch.testing.assert_close(
        from_bytes.model.posterior(x, labels).loc, model.posterior(x, labels).loc, rtol=0, atol=0
    )


def test_a_pickle_renamed_safetensors_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"weights": RunsCodeWhenUnpickled(marker)}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_torch_save_zip_is_refused_as_a_pickle_archive(tmp_path):
    path = tmp_path / "torch.safetensors"
    torch.save(_model().state_dict(), path)
    with pytest.raises(CheckpointError, match="zip"):
        load_checkpoint(path)


def test_a_truncated_checkpoint_says_it_is_truncated(tmp_path):
    data = checkpoint_bytes(_model())
    for cut in (len(data) - 100, 200, 30):
        (tmp_path / "cut.safetensors").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated"):
            load_checkpoint(tmp_path / "cut.safetensors")


@pytest.mark.parametrize("content", [b"", b"hello", b"\x00" * 64, b"not a checkpoint at all, just text"])
def test_junk_files_are_refused_with_a_message(tmp_path, content):
    (tmp_path / "junk.safetensors").write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.safetensors")


def test_a_foreign_safetensors_file_is_named_as_such(tmp_path):
    save_file({"weight": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not a VAE Explorer checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")


def test_weights_that_do_not_fit_the_saved_config_are_refused(tmp_path):
    data = checkpoint_bytes(_model(latent_dim=3))
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    config = json.loads(header["__metadata__"]["model_config"])
    config["latent_dim"] = 5
    header["__metadata__"]["model_config"] = json.dumps(config)
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    (tmp_path / "lie.safetensors").write_bytes(
        struct.pack("<Q", len(new_header)) + new_header + data[8 + length :]
    )
    with pytest.raises(CheckpointError, match="wrong shapes"):
        load_checkpoint(tmp_path / "lie.safetensors")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_no_shipped_checkpoint_carries_a_path_of_the_machine_that_made_it():
    import re
    from pathlib import Path

    from safetensors import safe_open

    machine_path = re.compile(r"/work|/root|/home|/tmp|/Users|shared/data|[A-Z]:\\\\")
    for path in sorted((Path(__file__).resolve().parents[1] / "pretrained").glob("*.safetensors")):
        with safe_open(str(path), "pt") as handle:
            for key, value in handle.metadata().items():
                assert not machine_path.search(value), f"{path.name} {key}: {machine_path.search(value)}"


def test_a_saved_checkpoint_keeps_no_data_folder(tmp_path):
    from vae_core import ModelConfig, build_model, load_checkpoint, save_checkpoint

    metrics = {
        "data": "MNIST train (/home/someone/mnist)",
        "command": "python -m vae_core train --data-dir /home/someone/mnist",
    }
    path = save_checkpoint(
        tmp_path / "m.safetensors", build_model(ModelConfig(hidden=(16,))), metrics=metrics
    )
    shown = load_checkpoint(path).metrics
    assert "/home" not in shown["data"] and "/home" not in shown["command"]
