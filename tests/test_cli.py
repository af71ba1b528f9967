"""The command line, run as a user would: train, evaluate, sample, and bad input."""

import json
import os
import subprocess
import sys

from conftest import REPO_ROOT
from PIL import Image

from vae_core import load_checkpoint


def _cli(*args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "vae_core", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_train_evaluate_and_sample_from_the_command_line(tmp_path, mnist_dir):
    out = tmp_path / "tiny.safetensors"
    trained = _cli(
        "train",
        "--latent-dim",
        "2",
        "--hidden",
        "64",
        "--kind",
        "mlp",
        "--epochs",
        "0.2",
        "--batch-size",
        "128",
        "--lr",
        "1e-3",
        "--objective",
        "elbo",
        "--k",
        "1",
        "--beta",
        "1.0",
        "--seed",
        "0",
        "--device",
        "auto",
        "--data-dir",
        str(mnist_dir),
        "--out",
        str(out),
    )
    assert trained.returncode == 0, trained.stderr
    assert out.is_file() and "it/s" in trained.stderr or "step/s" in trained.stderr  # the progress bar
    evaluated = _cli(
        "evaluate", str(out), "--data-dir", str(mnist_dir), "--k", "200", "--limit", "50", "--json"
    )
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["n"] == 50 and result["k"] == 200
    assert result["nll"] > 0 and result["recon"] <= 0 and result["kl"] >= 0
    assert result["nll"] <= -result["elbo"] + 1.0  # log p(x) >= ELBO up to estimator noise
    stored = _cli("evaluate", str(out), "--data-dir", str(mnist_dir), "--k", "20", "--limit", "10", "--store")
    assert stored.returncode == 0, stored.stderr
    test_metrics = load_checkpoint(out).metrics["test"]
    assert test_metrics["n"] == 10 and test_metrics["k"] == 20 and test_metrics["nll"] > 0
    sampled = _cli("sample", str(out), "--n", "16", "--out", str(tmp_path / "grid.png"))
    assert sampled.returncode == 0, sampled.stderr
    assert Image.open(tmp_path / "grid.png").size == (2 * (4 * 29 + 1),) * 2


def test_a_missing_or_bad_checkpoint_gives_one_line_and_a_nonzero_exit(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04garbage")
    for path in (tmp_path / "missing.safetensors", bad):
        for command in (["evaluate", str(path)], ["sample", str(path), "--out", str(tmp_path / "x.png")]):
            result = _cli(*command)
            assert result.returncode != 0
            assert "Traceback" not in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error:")


def test_vae_core_never_imports_streamlit():
    code = "import sys, vae_core, vae_core.cli; assert 'streamlit' not in sys.modules, 'streamlit imported'"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0
