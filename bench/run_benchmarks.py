"""One command for the performance figures: `python bench/run_benchmarks.py --data-dir DIR`.

Everything is compared within one run (ratios), since timings on shared machines are noisy:
  a. training throughput of the 784-400-20 MLP, vae_core's Trainer vs a reference loop that
     mirrors the classic PyTorch VAE example, at batch 128 and 512, and their test ELBO;
  b. the CPU FLOP bound for that model (measured GEMM throughput / FLOPs per image);
  c. inference latencies (decode, manifold grid, half-image completion, log p(x) of 1,000 digits);
  d. the latent plane in a real browser beside the old plotly map (bench/latent_plane_latency.py).
Writes JSON (--json) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.reference_vae_loop import ReferenceTraining, reference_test_elbo  # noqa: E402
from vae_core import (  # noqa: E402
    ModelConfig,
    TrainConfig,
    Trainer,
    complete_masked_image,
    decode,
    evaluate_model,
    load_digits,
    load_train_validation,
    log_likelihood_estimate,
    observed_mask,
)

LAYERS = [(784, 400), (400, 40), (20, 400), (400, 784)]  # (in, out) of the 784-400-20 MLP's Linear layers


def flops_per_training_image() -> int:
    """Multiply-adds x2 of one image's forward and backward GEMMs.

    Forward: 2*in*out per layer. Backward: the weight gradient (2*in*out) for every layer and the
    input gradient (2*in*out) for every layer but the first (pixels need no gradient).
    """
    forward = sum(2 * i * o for i, o in LAYERS)
    backward = sum(2 * i * o for i, o in LAYERS) + sum(2 * i * o for i, o in LAYERS[1:])
    return forward + backward


def _gemm_operands(batch: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return [(torch.randn(batch, i), torch.randn(o, i), torch.randn(batch, o)) for i, o in LAYERS]


def _gemm_step_seconds(mats) -> float:
    """One training step's GEMMs and nothing else: forward, weight and input gradients."""
    started = time.perf_counter()
    for n, (x, w, g) in enumerate(mats):
        torch.mm(x, w.t())  # forward
        torch.mm(g.t(), x)  # weight gradient
        if n:
            torch.mm(g, w)  # input gradient
    return time.perf_counter() - started


def gemm_bound_images_per_s(batch: int, repeats: int = 30) -> dict:
    """Time exactly the GEMMs one training step needs (no elementwise work): the FLOP bound."""
    mats = _gemm_operands(batch)
    for _ in range(5):
        _gemm_step_seconds(mats)
    seconds = statistics.median(_gemm_step_seconds(mats) for _ in range(repeats))
    flops = flops_per_training_image() * batch
    return {"gflops": flops / seconds / 1e9, "images_per_s": batch / seconds}


def _quartiles(values: list[float]) -> list[float]:
    return statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3


def bench_training(data_dir, epochs: float, batch: int, window: int = 25, probe_steps: int = 3) -> dict:
    """vae_core's Trainer, the reference loop and the GEMM bound, interleaved in one run.

    The two loops take turns, `window` steps each, with a few GEMM-only steps between turns,
    so all three see the same load on a shared machine. Each loop counts only its own steps:
    the trainer leaves out validation and time spent by its consumer (as it reports to users);
    the reference loop counts its DataLoader. Per-turn ratios give the noise.
    """
    train, valid = load_train_validation(data_dir)
    test = load_digits("test", data_dir)
    binary_test = test.fixed_binary()
    config = ModelConfig(latent_dim=20, hidden=(400,))
    trainer = Trainer(
        config, TrainConfig(epochs=epochs, batch_size=batch, seed=0, log_every=window), train, valid
    )
    reference = ReferenceTraining(train.pixels, train.labels, epochs, batch, seed=0)
    mats = _gemm_operands(batch)
    events = trainer.run()
    ours_turns, paired_turns, gemm_steps, wall_with_validation = [], [], [], 0.0
    step, turn = 0, 0
    while True:
        order = ("ours", "reference") if turn % 2 == 0 else ("reference", "ours")
        turn += 1
        ours_seconds = ours_steps = reference_seconds = None
        for name in order:
            if name == "ours":
                started = time.perf_counter()
                event = next(events, None)
                seconds = time.perf_counter() - started
                if event is None:
                    continue
                wall_with_validation += seconds
                if event.kind == "step":  # steps only: epoch events also hold validation
                    ours_seconds, ours_steps = seconds, event.step - step
                step = event.step
            elif not reference.done:
                before = reference.seconds
                trained = reference.advance(window)
                reference_seconds = (reference.seconds - before) / trained
        gemm_steps += [_gemm_step_seconds(mats) for _ in range(probe_steps)]
        if ours_seconds and ours_steps:
            ours_turns.append(ours_seconds / ours_steps)
            if reference_seconds is not None:
                paired_turns.append(reference_seconds / ours_turns[-1])  # same turn, same load
        if event is None and reference.done:
            break
    ours = evaluate_model(trainer.model, test, k=1)["elbo"]
    theirs = reference_test_elbo(reference.model, binary_test)
    ours_images_per_s = trainer.metrics()["images_per_s"]
    reference_images_per_s = reference.images / reference.seconds
    gemm_images_per_s = batch / statistics.median(gemm_steps)
    return {
        "batch": batch,
        "epochs": epochs,
        "vae_core_images_per_s": ours_images_per_s,
        "vae_core_images_per_s_with_validation": trainer.step * batch / wall_with_validation,
        "reference_images_per_s": reference_images_per_s,
        "speedup": ours_images_per_s / reference_images_per_s,
        "speedup_turn_quartiles": _quartiles(paired_turns),
        "gemm_bound_images_per_s": gemm_images_per_s,
        "gemm_bound_gflops": gemm_images_per_s * flops_per_training_image() / 1e9,
        "fraction_of_flop_bound": ours_images_per_s / gemm_images_per_s,
        "fraction_of_flop_bound_turn_quartiles": _quartiles(
            [statistics.median(gemm_steps) / s for s in ours_turns]
        ),
        "vae_core_test_elbo": ours,
        "reference_test_elbo": theirs,
        "model": trainer.model,
    }


def _median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_inference(model, data_dir) -> dict:
    test = load_digits("test", data_dir)
    binary = test.fixed_binary()
    model.eval()
    z_one = torch.zeros(1, model.latent_dim)
    z_grid = torch.randn(400, model.latent_dim)
    mask = observed_mask("top")
    with torch.no_grad():
        results = {
            "decode_one_point_ms": 1e3 * _median_seconds(lambda: decode(model, z_one), 200),
            "manifold_grid_20x20_ms": 1e3 * _median_seconds(lambda: decode(model, z_grid), 30),
        }
    results["completion_300_steps_s"] = _median_seconds(
        lambda: complete_masked_image(model, binary[0], mask, steps=300, n_completions=8), 3
    )
    started = time.perf_counter()
    log_likelihood_estimate(model, binary[:1000], k=1000)
    results["log_px_1000_digits_k1000_s"] = time.perf_counter() - started
    return results


def bench_click(skip: bool) -> dict:
    script = REPO / "bench" / "latent_plane_latency.py"
    if skip or not script.is_file():
        return {"skipped": True}
    out = REPO / "bench" / "results" / "latent_plane_latency.json"
    out.parent.mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, str(script), "--clicks", "20", "--json", str(out)], check=True, timeout=1200
    )
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="MNIST IDX folder ($VAE_DATA_DIR)")
    parser.add_argument("--epochs", type=float, default=10, help="epochs for the throughput/ELBO comparison")
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for every loop (default: torch's)"
    )
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--skip-inference", action="store_true", help="training figures only")
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "latest.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
                          "torch": torch.__version__}}  # fmt: skip
    training = []
    for batch in args.batches:
        load_before = os.getloadavg()[0]  # other processes on a shared machine: context for the noise
        result = bench_training(args.data_dir, args.epochs, batch)
        model = result.pop("model")
        result["load_average_1min_before_after"] = [load_before, os.getloadavg()[0]]
        training.append(result)
    report["training"] = training
    report["flops_per_training_image"] = flops_per_training_image()
    report["inference"] = {} if args.skip_inference else bench_inference(model, args.data_dir)
    report["app_click"] = bench_click(args.skip_browser)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(
        "| batch | vae_core img/s | reference img/s | speed-up | FLOP bound img/s | of bound | test ELBO ours / ref |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in training:
        print(f"| {r['batch']} | {r['vae_core_images_per_s']:,.0f} | {r['reference_images_per_s']:,.0f} | "
              f"{r['speedup']:.2f}× | {r['gemm_bound_images_per_s']:,.0f} | {100 * r['fraction_of_flop_bound']:.0f}% | "
              f"{r['vae_core_test_elbo']:.2f} / {r['reference_test_elbo']:.2f} |")  # fmt: skip
    for r in training:
        speedup, bound = r["speedup_turn_quartiles"], r["fraction_of_flop_bound_turn_quartiles"]
        print(f"- batch {r['batch']}: per-turn speed-up quartiles {speedup[0]:.2f} / {speedup[1]:.2f} / "
              f"{speedup[2]:.2f}, of bound {bound[0]:.0%} / {bound[1]:.0%} / {bound[2]:.0%}; with validation "
              f"{r['vae_core_images_per_s_with_validation']:,.0f} img/s; load average "
              f"{r['load_average_1min_before_after'][0]:.1f} -> {r['load_average_1min_before_after'][1]:.1f}")  # fmt: skip
    print()
    for name, value in report["inference"].items():
        print(f"- {name}: {value:.3f}")
    click = report["app_click"]
    if not click.get("skipped"):
        print(f"- latent plane vs plotly map: {json.dumps(click)}")
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
