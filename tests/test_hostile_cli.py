"""Hostile command lines: every flag of train, evaluate and sample given the wrong type, nan, inf, a
negative, zero or a huge value gets one line on stderr and exit status 2, before any work; a run
too large for memory is refused with what to lower; an unwritable --out is found before training;
Ctrl-C saves what was trained."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT

from vae_core import ModelConfig, TrainConfig, load_checkpoint, load_sample_digits, save_checkpoint
from vae_core import cli as cli_module
from vae_core.cli import main
from vae_core.limits import MB, estimate_run_memory
from vae_core.models import build_model


def run_cli(capsys, *args: str) -> tuple[int, str]:
    """main(args) in this process: its exit status and stderr."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


BAD_NUMBERS = ["nan", "inf", "-inf", "abc", "", "1e999", "9" * 5000, "٣"]
TRAIN_FLAGS = {
    "--latent-dim": ["0", "-1", "2.5", "257", "1e9", "True"],
    "--hidden": ["20000,20000", "abc", "-3", "0", "1e9", "512.5", "1,1,1,1,1,1,1,1,1", ",", "256;rm -rf"],
    "--epochs": ["0", "-1", "0.0", "1e9", "10001"],
    "--batch-size": ["0", "1", "-1", "2.5", "1e9", "60001"],
    "--lr": ["0", "-1e-3", "2", "1e9"],
    "--k": ["0", "-1", "5001", "1e9", "2.5"],
    "--beta": ["-1", "1e9", "1001"],
    "--warmup-epochs": ["-1", "1e9", "10001"],
    "--validation-size": ["-1", "60000", "1e9", "0.5"],
    "--seed": ["-1", str(2**64), "1.5"],
    "--threads": ["0", "-1", "1e9", "1025"],
    "--eval-k": ["-1", "1e9", "100001", "2.5"],
    "--max-memory-mb": ["0", "-1", "1e10"],
    "--image-size": ["7", "0", "abc"],
    "--kind": ["transformer", ""],
    "--activation": ["gelu;rm", ""],
    "--objective": ["vi", ""],
    "--binarization": ["sometimes"],
    "--device": ["tpu", ""],
}


def _train_cases():
    for flag, values in TRAIN_FLAGS.items():
        numeric = flag not in ("--kind", "--activation", "--objective", "--binarization", "--device")
        for value in values + (BAD_NUMBERS if numeric else []):
            yield pytest.param(flag, value, id=f"{flag}={value[:12]}")


@pytest.mark.parametrize(("flag", "value"), _train_cases())
def test_every_train_flag_refuses_bad_values_in_one_line(capsys, tmp_path, flag, value):
    out = tmp_path / "never.safetensors"
    code, err = run_cli(capsys, "train", flag, value, "--out", str(out))
    assert_refused(code, err, flag)
    assert not out.exists()


EVALUATE_FLAGS = {
    "--k": ["0", "-1", "100001", "1e9", "2.5"],
    "--limit": ["0", "-1", "2.5", "1e9"],
    "--batch-size": ["0", "-1", "10001", "1e9", "2.5"],
    "--seed": ["-1", str(2**64)],
    "--device": ["tpu"],
}
SAMPLE_FLAGS = {
    "--n": ["0", "-1", "10001", "1e9", "2.5"],
    "--temperature": ["-1", "-0.5", "10.5", "1e9"],
    "--label": ["-1", "1000", "2.5"],
    "--seed": ["-1", str(2**64)],
}


def _command_cases(command, flags):
    for flag, values in flags.items():
        for value in values + (BAD_NUMBERS if flag != "--device" else []):
            yield pytest.param(command, flag, value, id=f"{command}{flag}={value[:12]}")


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [*_command_cases("evaluate", EVALUATE_FLAGS), *_command_cases("sample", SAMPLE_FLAGS)],
)
def test_every_evaluate_and_sample_flag_refuses_bad_values_in_one_line(
    capsys, tmp_path, command, flag, value
):
    # The checkpoint need not exist: arguments are checked before anything is read.
    extra = ["--out", str(tmp_path / "x.png")] if command == "sample" else []
    code, err = run_cli(capsys, command, str(tmp_path / "missing.safetensors"), flag, value, *extra)
    assert_refused(code, err, flag)
    assert not (tmp_path / "x.png").exists()


def test_evaluate_with_a_negative_batch_used_to_print_elbo_zero_and_now_exits_2(capsys, tmp_path):
    code, err = run_cli(capsys, "evaluate", str(tmp_path / "m.safetensors"), "--batch-size", "-1")
    assert_refused(code, err, "--batch-size", "between 1")


@pytest.fixture
def tiny_checkpoints(tmp_path):
    plain, conditional = tmp_path / "plain.safetensors", tmp_path / "conditional.safetensors"
    save_checkpoint(plain, build_model(ModelConfig(hidden=(16,))))
    save_checkpoint(conditional, build_model(ModelConfig(hidden=(16,), conditional=True)))
    return plain, conditional


def test_sample_checks_the_label_against_the_model(capsys, tmp_path, tiny_checkpoints):
    plain, conditional = tiny_checkpoints
    png = tmp_path / "grid.png"
    assert_refused(*run_cli(capsys, "sample", str(plain), "--label", "3", "--out", str(png)), "conditional")
    assert_refused(
        *run_cli(capsys, "sample", str(conditional), "--label", "10", "--out", str(png)), "0 and 9"
    )
    assert not png.exists()
    code, err = run_cli(capsys, "sample", str(conditional), "--label", "3", "--n", "4", "--temperature", "0",
                        "--out", str(png))  # fmt: skip
    assert code == 0 and png.is_file(), err


# ----------------------------------------------------------------------------- memory bounds
@pytest.mark.parametrize(
    ("args", "lower"),
    [
        (["--objective", "iwae", "--k", "5000", "--batch-size", "512"], "--k (now 5000)"),
        (["--hidden", "16384,16384", "--latent-dim", "2"], "parameters"),  # over the 50 M budget
        (["--hidden", "4096,4096", "--batch-size", "60000"], "--batch-size (now 60000)"),
        (["--objective", "iwae", "--k", "500"], "--k (now 500)"),  # validation: 500 x 2,000 digits
    ],
)
def test_a_run_too_large_for_memory_is_refused_before_it_starts(capsys, tmp_path, args, lower):
    out = tmp_path / "m.safetensors"
    code, err = run_cli(capsys, "train", *args, "--max-memory-mb", "1000", "--out", str(out))
    assert_refused(code, err, lower)
    assert not out.exists()


def test_the_default_memory_ceiling_is_this_machines_memory(capsys, tmp_path):
    # k x batch x 784 logits: 5000 x 60000 x 784 x 4 bytes is about 1 PB, on any machine.
    code, err = run_cli(capsys, "train", "--objective", "iwae", "--k", "5000", "--batch-size", "60000",
                        "--out", str(tmp_path / "m.safetensors"))  # fmt: skip
    assert_refused(code, err, "80% of this machine", "--k (now 5000)")


def test_the_estimate_names_each_part_and_grows_with_k_batch_and_width():
    base = estimate_run_memory(ModelConfig(), TrainConfig())
    assert base.peak < 100 * MB
    iwae = estimate_run_memory(ModelConfig(), TrainConfig(objective="iwae", k=5000, batch_size=512))
    # one step decodes k x batch images: at least their 784 logits and gradients, 4 bytes each
    assert iwae.training_step >= 5000 * 512 * 784 * 4 * 2
    wide = estimate_run_memory(ModelConfig(hidden=(4096, 4096)), TrainConfig())
    assert wide.parameters == 16 * sum(
        p.numel() for p in build_model(ModelConfig(hidden=(4096, 4096))).parameters()
    )
    evaluated = estimate_run_memory(ModelConfig(), TrainConfig(), eval_k=5000)
    assert evaluated.evaluation > 0 and evaluated.peak >= base.peak
    assert "parameters and Adam state" in iwae.describe() and "training step" in iwae.describe()


MEASURE = """
import gc, json, sys, torch
torch.set_num_threads(1)
from vae_core import ModelConfig, TrainConfig, Trainer, load_sample_digits
from vae_core.heap import return_freed_heap_to_os
from vae_core.limits import estimate_run_memory
def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))
model, train = json.loads(sys.argv[1]), json.loads(sys.argv[2])
digits = load_sample_digits()
train_digits, valid = digits.subset(slice(0, 3000)), digits.subset(slice(3000, 5000))
small = Trainer(ModelConfig(**dict(model, hidden=(8,))), TrainConfig(**dict(train, batch_size=4, k=min(2, train.get("k", 1)),
                epochs=0.003), device="cpu"), train_digits, valid)
list(small.run())  # touches the code paths once: their pages are the interpreter's, not the run's
del small; gc.collect()
model_config, train_config = ModelConfig(**model), TrainConfig(**train, device="cpu", validation_size=2000)
base = status("VmRSS"); open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM)
trainer = Trainer(model_config, train_config, train_digits, valid, between_phases=return_freed_heap_to_os)
list(trainer.run())
print(json.dumps({"measured": status("VmHWM") - base, "estimate": estimate_run_memory(model_config, train_config).peak}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's peak-RSS reset")
@pytest.mark.parametrize(
    ("model", "train"),
    [
        ({"hidden": [1024, 512]}, {"batch_size": 512, "epochs": 0.4}),
        # Large enough that its step's tensors outgrow the heap the warm-up run freed before the
        # baseline (a k=30, batch-128 run mostly reused it and measured a quarter of its peak).
        ({"hidden": [256, 128]}, {"batch_size": 256, "epochs": 0.1, "objective": "iwae", "k": 50}),
        ({"kind": "conv"}, {"batch_size": 256, "epochs": 0.2}),
    ],
    ids=["mlp", "iwae", "conv"],
)
def test_the_estimate_is_above_the_measured_peak_and_not_far_above(model, train):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(model), json.dumps(train)],
                         capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    # Measured on this project's machine, with the heap trimmed between phases: 0.53-0.61 (IWAE),
    # 0.57-0.64 (conv) and 0.54-0.85 (MLP) of the estimate; untrimmed, the MLP reached 1.03.
    assert 0.4 * result["estimate"] <= result["measured"] <= result["estimate"], result


# ---------------------------------------------------------------------------- the destination
def test_an_unwritable_out_is_refused_before_any_data_is_read(capsys, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("data were loaded although --out cannot be written")

    monkeypatch.setattr(cli_module, "load_train_validation", never)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file, not a folder")
    a_folder = tmp_path / "folder.safetensors"
    a_folder.mkdir()
    for out, words in [
        (a_file / "model.safetensors", ("cannot write --out", "notes.txt is a file, not a folder")),
        (a_file / "deeper" / "model.safetensors", ("notes.txt is a file, not a folder",)),
        (a_folder, ("is a folder",)),
        (tmp_path / "model.pt", (".safetensors",)),
    ]:
        assert_refused(*run_cli(capsys, "train", "--out", str(out)), *words)
    assert_refused(
        *run_cli(capsys, "sample", "m.safetensors", "--out", str(a_file / "grid.png")), "cannot write"
    )


def test_evaluate_store_checks_the_checkpoint_is_writable_first(capsys, tmp_path, tiny_checkpoints):
    plain, _ = tiny_checkpoints
    os.chmod(plain, 0o444)
    if os.access(plain, os.W_OK):
        pytest.skip("running as root: a read-only file is still writable")
    assert_refused(*run_cli(capsys, "evaluate", str(plain), "--store"), "cannot write")


# ------------------------------------------------------------------------------------ Ctrl-C
@pytest.fixture
def sample_data(monkeypatch):
    """The CLI trains on the bundled sample: no MNIST folder needed."""
    digits = load_sample_digits()
    monkeypatch.setattr(
        cli_module,
        "load_train_validation",
        lambda *args, **kwargs: (digits.subset(slice(0, 4000)), digits.subset(slice(4000, None))),
    )


def test_a_second_interrupt_abandons_the_run_and_says_how_many_steps_were_lost(
    capsys, tmp_path, monkeypatch, sample_data
):
    real_run = cli_module.Trainer.run

    def interrupted_run(self, stop_event=None):
        for event in real_run(self, stop_event):
            yield event
            if self.step >= 40:
                raise KeyboardInterrupt  # as the second Ctrl-C raises it

    monkeypatch.setattr(cli_module.Trainer, "run", interrupted_run)
    out = tmp_path / "m.safetensors"
    code, err = run_cli(capsys, "train", "--hidden", "16", "--epochs", "5", "--batch-size", "64", "--quiet",
                        "--out", str(out))  # fmt: skip
    assert code == 130 and not out.exists()
    assert "interrupted at step 40 of" in err and "nothing was saved, 40 steps are lost" in err


def test_the_first_interrupt_handler_stops_and_the_second_raises():
    interrupt = cli_module._FirstInterruptStops(enabled=True)
    with interrupt:
        assert signal.getsignal(signal.SIGINT) == interrupt._handle
        interrupt._handle(signal.SIGINT, None)
        assert interrupt.stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            interrupt._handle(signal.SIGINT, None)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_training_saves_the_steps_trained_so_far(tmp_path, mnist_dir):
    out = tmp_path / "interrupted.safetensors"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "vae_core", "train", "--hidden", "16", "--epochs", "100", "--batch-size",
               "64", "--data-dir", str(mnist_dir), "--validation-size", "1000", "--out", str(out)]  # fmt: skip
    log = tmp_path / "stderr.txt"  # one reader of stderr (a file), so no line can go to another
    with open(log, "wb") as stderr_file:
        process = subprocess.Popen(command, stderr=stderr_file, stdout=subprocess.PIPE, env=env)
        deadline = time.monotonic() + 120
        while b"step/s" not in (seen := log.read_bytes()) and b"s/step" not in seen:  # the bar shows a rate
            assert process.poll() is None and time.monotonic() < deadline, seen.decode()[-2000:]
            time.sleep(0.2)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=120)
    text = log.read_text(errors="replace")
    assert process.returncode == 130, text[-2000:]
    assert "Traceback" not in text and "saved the" in text
    saved = load_checkpoint(out)
    assert 0 < saved.metrics["steps"] < 100 * 859
    assert saved.metrics["interrupted"].startswith("stopped by Ctrl-C at step")
    assert json.loads(stdout.decode().splitlines()[-1])["checkpoint"] == str(out)


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"WORLD_SIZE": "abc"}, "$WORLD_SIZE must be a whole number"),
        ({"WORLD_SIZE": "2"}, "$RANK must be a whole number"),  # RANK missing
        ({"WORLD_SIZE": "2", "RANK": "5"}, "$RANK 5 must be below $WORLD_SIZE 2"),
        ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "-1"}, "$LOCAL_RANK"),
    ],
)
def test_a_broken_torchrun_environment_is_one_line(capsys, tmp_path, monkeypatch, environ, words):
    monkeypatch.delenv("RANK", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    code, err = run_cli(capsys, "train", "--out", str(tmp_path / "m.safetensors"))
    assert_refused(code, err, words)
