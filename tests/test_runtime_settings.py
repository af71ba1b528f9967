"""Process-wide settings belong to the app (explorer/runtime_settings.py, applied by app.py), never
to vae_core: importing and training with the library leaves the process as it was, and the app's
first paint imports no torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from explorer import runtime_settings

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, **env) -> str:
    import os

    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, capture_output=True, text=True,
        timeout=180, env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.strip().splitlines()[-1]


def test_training_with_vae_core_changes_nothing_process_wide():
    # malloc_trim, the switch interval and torch's thread count, before and after a short run
    out = _run("""
        import ctypes, sys
        before = sys.getswitchinterval()
        import torch
        threads = torch.get_num_threads()
        trims, real_cdll = [], ctypes.CDLL
        class Libc:
            def malloc_trim(self, pad): trims.append(pad)
        ctypes.CDLL = lambda name, *a, **k: Libc() if name == "libc.so.6" else real_cdll(name, *a, **k)
        from vae_core import ModelConfig, TrainConfig, Trainer, load_sample_digits
        digits = load_sample_digits()
        trainer = Trainer(ModelConfig(hidden=(16,)), TrainConfig(epochs=0.02, batch_size=32, device="cpu"),
                          digits.subset(slice(0, 2000)), digits.subset(slice(2000, 2200)))
        events = list(trainer.run())
        assert any(e.kind == "epoch" for e in events)  # validation ran
        print(len(trims), sys.getswitchinterval() == before, torch.get_num_threads() == threads)
    """)
    assert out == "0 True True"


def test_the_trainer_calls_its_hook_before_each_validation(sample_digits):
    from vae_core import ModelConfig, TrainConfig, Trainer

    calls = []
    trainer = Trainer(
        ModelConfig(hidden=(16,)), TrainConfig(epochs=2, batch_size=500, device="cpu"),
        sample_digits.subset(slice(0, 1000)), sample_digits.subset(slice(1000, 1200)),
        between_phases=lambda: calls.append(trainer.step),
    )  # fmt: skip
    list(trainer.run())
    assert calls == [2, 4, 4]  # after each epoch's two steps, and the final validation


def test_the_app_lowers_the_switch_interval_and_never_raises_it():
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)  # CPython's default
        runtime_settings.apply()
        assert sys.getswitchinterval() == pytest.approx(runtime_settings.GIL_SWITCH_INTERVAL_S)
        sys.setswitchinterval(0.0001)
        runtime_settings.apply()
        assert sys.getswitchinterval() == pytest.approx(0.0001)
    finally:
        sys.setswitchinterval(before)


def test_the_apps_torch_has_the_threads_its_setting_asks_for():
    out = _run(
        """
        import sys
        from explorer import runtime_settings
        assert "torch" not in sys.modules
        print(runtime_settings.app_torch().get_num_threads())
        """,
        VAE_APP_THREADS="2",
    )
    assert out == "2"


def test_the_first_paint_pauses_only_while_torch_is_not_loaded(monkeypatch):
    pauses = []
    monkeypatch.setattr(runtime_settings.time, "sleep", pauses.append)
    runtime_settings.wait_for_first_paint()  # torch is loaded in this test process
    monkeypatch.delitem(sys.modules, "torch")
    runtime_settings.wait_for_first_paint()
    assert pauses == [runtime_settings.FIRST_PAINT_HEAD_START_S]


# The modules app.py and the Overview import before the model card is drawn: none may import torch
# (on a fresh server it takes seconds), at import time or through each other.
FIRST_PAINT_MODULES = [
    "explorer.runtime_settings",
    "explorer.ui.resources",
    "explorer.ui.sidebar",
    "explorer.ui.widgets",
    "explorer.state.registry",
    "explorer.state.share_links",
]


def test_the_first_paint_modules_import_without_torch():
    out = _run(f"""
        import importlib, importlib.abc, sys

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("torch", "vae_core"):
                    raise ImportError(name + " is blocked: the first paint must not import it")

        sys.meta_path.insert(0, NoTorch())
        for name in {FIRST_PAINT_MODULES!r}:
            importlib.import_module(name)
        print("imported")
    """)
    assert out == "imported"


def test_the_train_poll_interval_is_bounded_and_a_bad_value_gives_the_default(monkeypatch):
    for text, seconds in [("0.5", 0.5), ("0.01", 0.05), ("100", 5.0), ("abc", 1.0), ("nan", 1.0), ("", 1.0)]:
        monkeypatch.setenv(runtime_settings.TRAIN_POLL_ENV, text)
        assert runtime_settings.train_poll_interval_s() == seconds, text
