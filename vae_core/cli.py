"""Command line: `python -m vae_core train | evaluate | sample`.

The trainer only yields events; this module turns them into a tqdm progress bar. Errors that
vae_core raises on purpose become one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .config import BINARIZATIONS, DEVICES, MODEL_KINDS, OBJECTIVES, ModelConfig, TrainConfig
from .data import EVALUATION_BINARIZATION_SEED, load_digits, load_train_validation
from .distributed import init_distributed, shutdown_distributed
from .errors import VAEError
from .images import save_image_grid
from .inference import sample_prior
from .objectives import elbo_terms, log_likelihood_estimate
from .train import Trainer, resolve_device


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 512,256, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vae_core", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a VAE on MNIST and save a .safetensors checkpoint")
    train.add_argument("--kind", choices=MODEL_KINDS, default="mlp")
    train.add_argument("--latent-dim", type=int, default=2)
    train.add_argument("--hidden", type=_int_list, default=(512, 256), help="hidden widths, e.g. 512,256")
    train.add_argument(
        "--conditional", action="store_true", help="feed the digit label to encoder and decoder"
    )
    train.add_argument("--image-size", type=int, choices=(28, 14), default=28)
    train.add_argument("--activation", choices=("relu", "elu", "tanh"), default="relu")
    train.add_argument("--epochs", type=float, default=10)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--lr-decay", action="store_true", help="cosine-decay the learning rate to 0")
    train.add_argument("--objective", choices=OBJECTIVES, default="elbo")
    train.add_argument("--k", type=int, default=1, help="importance samples for --objective iwae")
    train.add_argument("--beta", type=float, default=1.0)
    train.add_argument("--warmup-epochs", type=float, default=0.0, help="epochs to ramp the KL weight from 0")
    train.add_argument("--binarization", choices=BINARIZATIONS, default="dynamic")
    train.add_argument("--validation-size", type=int, default=10_000)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", choices=DEVICES, default="auto")
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files ($VAE_DATA_DIR)")
    train.add_argument("--out", required=True, help="checkpoint path, PATH.safetensors")
    train.add_argument(
        "--eval-k", type=int, default=0, help="after training, estimate test NLL with k samples"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--resume", default=None, help="start from this checkpoint's weights (its model config wins)"
    )

    evaluate = commands.add_parser("evaluate", help="test-set ELBO terms and importance-sampled NLL")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--data-dir", default=None)
    evaluate.add_argument("--k", type=int, default=5000)
    evaluate.add_argument("--limit", type=int, default=None, help="only the first N test images")
    evaluate.add_argument("--batch-size", type=int, default=100)
    evaluate.add_argument("--device", choices=DEVICES, default="auto")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument(
        "--store", action="store_true", help="also write the result into the checkpoint's metrics as 'test'"
    )

    sample = commands.add_parser("sample", help="a PNG grid of prior samples")
    sample.add_argument("checkpoint")
    sample.add_argument("--n", type=int, default=64)
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--label", type=int, default=None, help="digit for a conditional model")
    sample.add_argument("--out", required=True, help="PNG path")
    return parser


def _format_postfix(event) -> dict:
    postfix = {
        "elbo": f"{event.elbo:.1f}",
        "recon": f"{event.recon:.1f}",
        "kl": f"{event.kl:.1f}",
        "img/s": f"{event.images_per_s:,.0f}",
    }
    if event.validation:
        postfix["val_elbo"] = f"{event.validation['elbo']:.1f}"
    return postfix


def command_train(args: argparse.Namespace) -> int:
    model_config = ModelConfig(
        kind=args.kind,
        latent_dim=args.latent_dim,
        hidden=args.hidden,
        conditional=args.conditional,
        image_size=args.image_size,
        activation=args.activation,
    )
    train_config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        beta=args.beta,
        objective=args.objective,
        k=args.k,
        warmup_epochs=args.warmup_epochs,
        seed=args.seed,
        device=args.device,
        binarization=args.binarization,
        validation_size=args.validation_size,
        num_threads=args.threads,
        lr_decay=args.lr_decay,
    )
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise VAEError(f"--out must end in .safetensors, got {out}")
    resumed = load_checkpoint(args.resume) if args.resume else None
    if resumed is not None:
        model_config = resumed.model_config
    context = init_distributed(args.device)
    try:
        return _train_and_save(args, model_config, train_config, out, resumed, context)
    finally:
        shutdown_distributed(context)


def _train_and_save(args, model_config, train_config, out, resumed, context) -> int:
    from tqdm import tqdm

    train_digits, validation_digits = load_train_validation(
        args.data_dir, args.binarization, model_config.image_size, args.validation_size
    )
    model = resumed.model if resumed else None
    trainer = Trainer(model_config, train_config, train_digits, validation_digits, model, context)
    started = time.time()
    where = str(trainer.device)
    if context.enabled:
        where += f", {context.world_size} processes ({context.backend})"
    bar = tqdm(
        total=trainer.total_steps,
        unit="step",
        disable=args.quiet or not context.is_main,
        dynamic_ncols=True,
        desc=f"{model_config.describe()} on {where}",
    )
    for event in trainer.run():
        bar.update(event.step - bar.n)
        bar.set_postfix(_format_postfix(event), refresh=False)
        if event.kind == "epoch" and not args.quiet and context.is_main:
            val = event.validation or {}
            bar.write(
                f"epoch {event.epoch:5.1f}  train elbo {event.elbo:8.2f}  val elbo "
                f"{val.get('elbo', math.nan):8.2f}  (recon {val.get('recon', math.nan):.2f}, "
                f"kl {val.get('kl', math.nan):.2f})  {event.images_per_s:,.0f} img/s"
            )
    bar.close()
    if not context.is_main:
        return 0
    metrics = trainer.metrics()
    metrics["command"] = "python -m vae_core " + shlex.join(sys.argv[1:])
    metrics["wall_seconds"] = time.time() - started
    metrics["device"] = str(trainer.device)
    metrics["processes"] = context.world_size
    if resumed is not None:
        metrics["resumed_from"] = str(args.resume)
    metrics["data"] = train_digits.source
    # Saved before the (long) evaluation so an interrupted evaluation never loses the training.
    save_checkpoint(out, trainer.model, train_config, metrics, trainer.curve())
    if args.eval_k:
        test = load_digits("test", args.data_dir, args.binarization, model_config.image_size)
        metrics["test"] = evaluate_model(trainer.model, test, args.eval_k, 100, seed=0)
        save_checkpoint(out, trainer.model, train_config, metrics, trainer.curve())
    print(
        json.dumps(
            {
                "checkpoint": str(out),
                **{k: v for k, v in metrics.items() if k != "validation"},
                "validation": metrics["validation"],
            },
            default=str,
        )
    )
    return 0


@torch.no_grad()
def evaluate_model(model, digits, k: int, batch_size: int = 100, seed: int = 0, progress=None) -> dict:
    """Test-set ELBO terms and NLL (-log p(x), k importance samples), nats per image."""
    binary = digits.fixed_binary(EVALUATION_BINARIZATION_SEED).to(model.device)
    labels = digits.labels.to(model.device)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    sums = {"recon": 0.0, "kl": 0.0, "elbo": 0.0, "log_px": 0.0}
    for start in range(0, len(binary), batch_size):
        x = binary[start : start + batch_size]
        y = labels[start : start + batch_size] if model.config.conditional else None
        terms = elbo_terms(model, x, y, generator)
        sums["recon"] += terms.recon.sum().item()
        sums["kl"] += terms.kl.sum().item()
        sums["elbo"] += terms.elbo.sum().item()
        sums["log_px"] += log_likelihood_estimate(model, x, y, k, generator).sum().item()
        if progress is not None:
            progress(len(x))
    n = len(binary)
    return {
        "elbo": sums["elbo"] / n,
        "recon": sums["recon"] / n,
        "kl": sums["kl"] / n,
        "nll": -sums["log_px"] / n,
        "n": n,
        "k": k,
        "binarization_seed": EVALUATION_BINARIZATION_SEED,
    }


def command_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    device = resolve_device(args.device)
    checkpoint = load_checkpoint(args.checkpoint, map_location=device)
    config = checkpoint.model_config
    binarization = checkpoint.train_config.get("binarization", "dynamic")
    digits = load_digits("test", args.data_dir, binarization, config.image_size)
    if args.limit is not None:
        if args.limit < 1:
            raise VAEError(f"--limit must be at least 1, got {args.limit}")
        digits = digits.subset(slice(0, args.limit))
    if not 1 <= args.k <= 100_000:
        raise VAEError(f"--k must be between 1 and 100000, got {args.k}")
    with tqdm(total=len(digits), unit="img", disable=args.json, desc=f"log p(x), k={args.k}") as bar:
        result = evaluate_model(checkpoint.model, digits, args.k, args.batch_size, args.seed, bar.update)
    result["checkpoint"] = str(args.checkpoint)
    result["binarization"] = binarization
    if args.store:
        metrics = {**checkpoint.metrics, "test": {k: v for k, v in result.items() if k != "checkpoint"}}
        save_checkpoint(args.checkpoint, checkpoint.model, checkpoint.train_config, metrics, checkpoint.curve)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['n']} test images, nats per image: ELBO {result['elbo']:.2f} "
            f"(recon {result['recon']:.2f}, KL {result['kl']:.2f}); NLL (k={args.k}) {result['nll']:.2f}"
        )
    return 0


def command_sample(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.model
    if not 1 <= args.n <= 10_000:
        raise VAEError(f"--n must be between 1 and 10000, got {args.n}")
    labels = None
    if model.config.conditional:
        labels = (
            torch.full((args.n,), args.label, dtype=torch.long)
            if args.label is not None
            else (torch.arange(args.n) % 10)
        )
    generator = torch.Generator().manual_seed(args.seed)
    _, probs = sample_prior(model, args.n, args.temperature, labels, generator)
    path = save_image_grid(probs, args.out, model.config.image_size)
    print(f"wrote {args.n} samples to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"train": command_train, "evaluate": command_evaluate, "sample": command_sample}[args.command]
    try:
        return handler(args)
    except (VAEError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
