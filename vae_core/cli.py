"""Command line: `python -m vae_core train | evaluate | sample`.

The trainer only yields events; this module turns them into a tqdm progress bar. Every flag is
parsed to its type and range (no nan, inf, negative or huge values), a run's memory is estimated
before it starts, and the checkpoint's folder is checked before training. Bad input and errors
that vae_core raises on purpose become one line on stderr and exit status 2, never a traceback.
Ctrl-C during training saves the steps trained so far; a second Ctrl-C abandons them.

Over 400 lines: three commands and the strict flag parsing that tests/test_hostile_cli.py pins;
the work itself is the library's (train, evaluation, inference).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .config import (
    ACTIVATIONS,
    BINARIZATIONS,
    DEVICES,
    IMAGE_SIZES,
    MAX_LATENT_DIM,
    OBJECTIVES,
    ModelConfig,
    TrainConfig,
    binarization_name,
    field_defaults,
    parse_hidden,
    setting_number,
)
from .distributed import init_distributed, shutdown_distributed
from .errors import ConfigError, VAEError
from .evaluation import evaluate_model
from .heap import return_freed_heap_to_os
from .images import save_image_grid
from .inference import sample_prior
from .limits import MB, check_run_memory
from .mnist import load_digits, load_train_validation
from .model_kinds import MODEL_KINDS
from .train import Trainer, resolve_device

MAX_EPOCHS = 10_000
MAX_SEED = 2**62  # the trainer adds a per-rank offset; torch seeds are 64-bit
MAX_EVAL_K = 100_000  # importance samples per test image: 10,000 images x 100,000 takes hours already


def _argument(read):
    """An argparse type from a settings reader (config.setting_number, config.parse_hidden): its
    ConfigError becomes argparse's one-line error, which names the flag."""

    def parse(text: str):
        try:
            return read(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def whole_number(low: int, high: int):
    """An argparse type: a whole number in [low, high], given in plain ASCII digits."""
    return _argument(lambda text: setting_number(text, "value", low, high, whole=True))


def finite_number(low: float, high: float, low_open: bool = False):
    """An argparse type: a finite number in [low, high] (or (low, high] with `low_open`)."""
    return _argument(lambda text: setting_number(text, "value", low, high, low_open=low_open))


hidden_widths = _argument(parse_hidden)  # --hidden 512,256


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments give one line and exit status 2 (argparse prints the usage block first)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def binarization_choice(text: str) -> str:
    """--binarization: one of config.BINARIZATIONS; "static" (its name before) means "threshold"."""
    name = binarization_name(text)
    if name not in BINARIZATIONS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text[:40]!r} (choose from {', '.join(BINARIZATIONS)})"
        )
    return name


def build_parser() -> argparse.ArgumentParser:
    model, training = field_defaults(ModelConfig), field_defaults(TrainConfig)  # the one source of defaults
    parser = OneLineParser(prog="python -m vae_core", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a VAE on MNIST and save a .safetensors checkpoint")
    train.add_argument("--kind", choices=MODEL_KINDS, default=model["kind"])
    train.add_argument("--latent-dim", type=whole_number(1, MAX_LATENT_DIM), default=model["latent_dim"])
    train.add_argument(
        "--hidden", type=hidden_widths, default=model["hidden"],
        help="MLP hidden widths, e.g. 512,256; the conv model uses the first as its dense layer's width",
    )  # fmt: skip
    train.add_argument(
        "--conditional", action="store_true", help="feed the digit label to encoder and decoder"
    )
    train.add_argument("--image-size", type=int, choices=IMAGE_SIZES, default=model["image_size"])
    train.add_argument("--activation", choices=ACTIVATIONS, default=model["activation"])
    train.add_argument(
        "--epochs", type=finite_number(0, MAX_EPOCHS, low_open=True), default=training["epochs"]
    )
    train.add_argument("--batch-size", type=whole_number(2, 60_000), default=training["batch_size"])
    train.add_argument("--lr", type=finite_number(0, 1, low_open=True), default=training["lr"])
    train.add_argument("--lr-decay", action="store_true", help="cosine-decay the learning rate to 0")
    train.add_argument("--objective", choices=OBJECTIVES, default=training["objective"])
    train.add_argument(
        "--k",
        type=whole_number(1, 5000),
        default=training["k"],
        help="importance samples for --objective iwae",
    )
    train.add_argument("--beta", type=finite_number(0, 1000), default=training["beta"])
    train.add_argument(
        "--warmup-epochs",
        type=finite_number(0, MAX_EPOCHS),
        default=training["warmup_epochs"],
        help="epochs to ramp the KL weight from 0",
    )
    train.add_argument(
        "--binarization", type=binarization_choice, default=training["binarization"],
        help=f"{', '.join(BINARIZATIONS)} ('static', the old name of threshold, is read as threshold)",
    )  # fmt: skip
    train.add_argument("--validation-size", type=whole_number(0, 59_999), default=training["validation_size"])
    train.add_argument("--seed", type=whole_number(0, MAX_SEED), default=training["seed"])
    train.add_argument("--device", choices=DEVICES, default=training["device"])
    train.add_argument("--threads", type=whole_number(1, 1024), default=None, help="torch CPU threads")
    train.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files ($VAE_DATA_DIR)")
    train.add_argument("--out", required=True, help="checkpoint path, PATH.safetensors")
    train.add_argument(
        "--eval-k", type=whole_number(0, MAX_EVAL_K), default=0,
        help="after training, estimate test NLL with k samples",
    )  # fmt: skip
    train.add_argument(
        "--max-memory-mb", type=finite_number(0, 1e9, low_open=True), default=None,
        help="refuse a run whose estimated peak memory is larger (default: 80%% of RAM, or of the GPU's memory)",
    )  # fmt: skip
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--resume", default=None, help="start from this checkpoint's weights (its model config wins)"
    )

    evaluate = commands.add_parser("evaluate", help="test-set ELBO terms and importance-sampled NLL")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--data-dir", default=None)
    evaluate.add_argument("--k", type=whole_number(1, MAX_EVAL_K), default=5000)
    evaluate.add_argument(
        "--limit", type=whole_number(1, 1_000_000), default=None, help="only the first N test images"
    )
    evaluate.add_argument("--batch-size", type=whole_number(1, 10_000), default=100)
    evaluate.add_argument("--device", choices=DEVICES, default="auto")
    evaluate.add_argument("--seed", type=whole_number(0, MAX_SEED), default=0)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument(
        "--store", action="store_true", help="also write the result into the checkpoint's metrics as 'test'"
    )

    sample = commands.add_parser("sample", help="a PNG grid of prior samples")
    sample.add_argument("checkpoint")
    sample.add_argument("--n", type=whole_number(1, 10_000), default=64)
    sample.add_argument(
        "--temperature",
        type=finite_number(0, 10),
        default=1.0,
        help="scale of the prior latents; 0 decodes z = 0",
    )
    sample.add_argument("--seed", type=whole_number(0, MAX_SEED), default=0)
    sample.add_argument(
        "--label", type=whole_number(0, 999), default=None, help="digit for a conditional model"
    )
    sample.add_argument("--out", required=True, help="PNG path")
    return parser


def _bound_name(train_config: TrainConfig) -> str:
    """What a training event's `bound` holds for this run: the ELBO, or the IWAE bound with k."""
    return f"iwae{train_config.k}" if train_config.objective == "iwae" else "elbo"


def _format_postfix(event, bound: str = "elbo") -> dict:
    postfix = {
        bound: f"{event.bound:.1f}",
        "recon": f"{event.recon:.1f}",
        "kl": f"{event.kl:.1f}",
        "img/s": f"{event.images_per_s:,.0f}",
    }
    if event.validation:
        postfix["val_elbo"] = f"{event.validation['elbo']:.1f}"
    return postfix


def writable_destination(path: str | Path, suffix: str | None = None, what: str = "--out") -> Path:
    """`path`, once a file can be created beside it: checked before hours of work, not after."""
    path = Path(path).expanduser()
    if suffix is not None and path.suffix != suffix:
        raise VAEError(f"{what} must end in {suffix}, got {path}")
    if path.is_dir():
        raise VAEError(f"{what} {path} is a folder; give a file name ending in {path.suffix or suffix}")
    existing = next(folder for folder in path.parents if folder.exists() or folder == folder.parent)
    if existing.exists() and not existing.is_dir():
        raise VAEError(
            f"cannot write {what} {path}: {existing} is a file, not a folder; choose another {what}"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # saving would create it anyway
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=".vae-write-check-")
        os.close(fd)
        os.unlink(probe)
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is read-only")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise VAEError(f"cannot write {what} {path} ({reason}); choose another {what}") from None
    return path


def memory_limit_bytes(device: torch.device) -> float:
    """80% of the RAM (or of the GPU's memory): the CLI's default ceiling for one run."""
    if device.type == "cuda":
        return 0.8 * torch.cuda.get_device_properties(device.index or 0).total_memory
    try:
        return 0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not Linux: a plain 16 GB
        return 16_000 * MB


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
    out = writable_destination(args.out, ".safetensors")
    resumed = load_checkpoint(args.resume) if args.resume else None
    if resumed is not None:
        model_config = resumed.model_config
    if args.max_memory_mb is not None:
        limit, where = args.max_memory_mb * MB, " (--max-memory-mb)"
    else:
        limit, where = (
            memory_limit_bytes(resolve_device(args.device)),
            " (80% of this machine; --max-memory-mb)",
        )
    check_run_memory(model_config, train_config, limit, eval_k=args.eval_k, where=where)
    context = init_distributed(args.device)
    try:
        return _train_and_save(args, model_config, train_config, out, resumed, context)
    finally:
        shutdown_distributed(context)


class _FirstInterruptStops:
    """While training: the first Ctrl-C sets `stop` (the run ends after this step and is saved),
    the second raises KeyboardInterrupt. Only in the main thread of a single-process run: the
    processes of a torchrun would each stop at a different step and wait for each other forever."""

    def __init__(self, enabled: bool):
        self.stop = threading.Event()
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        print(
            "\ninterrupted: ending after this step and saving the model trained so far "
            "(Ctrl-C again to abandon it)",
            file=sys.stderr,
        )

    def __enter__(self):
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)


def _train_and_save(args, model_config, train_config, out, resumed, context) -> int:
    from tqdm import tqdm

    train_digits, validation_digits = load_train_validation(
        args.data_dir, train_config.binarization, model_config.image_size, train_config.validation_size
    )
    model = resumed.model if resumed else None
    trainer = Trainer(
        model_config, train_config, train_digits, validation_digits, model, context,
        between_phases=return_freed_heap_to_os,  # this process is the CLI's: see estimate_run_memory
    )  # fmt: skip
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
    interrupt = _FirstInterruptStops(enabled=not context.enabled)
    try:
        with interrupt:
            for event in trainer.run(interrupt.stop):
                bar.update(event.step - bar.n)
                bar.set_postfix(_format_postfix(event, _bound_name(train_config)), refresh=False)
                if event.kind == "epoch" and not args.quiet and context.is_main:
                    val = event.validation or {}
                    bar.write(
                        f"epoch {event.epoch:5.1f}  train {_bound_name(train_config)} {event.bound:8.2f}  val elbo "
                        f"{val.get('elbo', math.nan):8.2f}  (recon {val.get('recon', math.nan):.2f}, "
                        f"kl {val.get('kl', math.nan):.2f})  {event.images_per_s:,.0f} img/s"
                    )
    except KeyboardInterrupt:
        bar.close()
        if context.is_main:
            print(
                f"interrupted at step {trainer.step:,} of {trainer.total_steps:,}: nothing was saved, "
                f"{trainer.step:,} steps are lost",
                file=sys.stderr,
            )
        return 130
    bar.close()
    if not context.is_main:
        return 0
    interrupted = interrupt.stop.is_set()
    metrics = trainer.metrics()
    metrics["command"] = "python -m vae_core " + shlex.join(sys.argv[1:])
    metrics["wall_seconds"] = time.time() - started
    metrics["device"] = str(trainer.device)
    metrics["processes"] = context.world_size
    if interrupted:
        metrics["interrupted"] = f"stopped by Ctrl-C at step {trainer.step} of {trainer.total_steps}"
    if resumed is not None:
        metrics["resumed_from"] = str(args.resume)
    metrics["data"] = train_digits.source
    # Saved before the (long) evaluation so an interrupted evaluation never loses the training.
    save_checkpoint(out, trainer.model, train_config, metrics, trainer.curve())
    if interrupted:
        print(
            f"saved the {trainer.step:,} steps trained (of {trainer.total_steps:,}) to {out}; "
            "train on from there with --resume",
            file=sys.stderr,
        )
    elif args.eval_k:
        test = load_digits("test", args.data_dir, train_config.binarization, model_config.image_size)
        return_freed_heap_to_os()  # training's freed tensors, before the evaluation's own
        try:
            metrics["test"] = evaluate_model(trainer.model, test, args.eval_k, 100, seed=0)
        except KeyboardInterrupt:
            print(
                f"interrupted during the test evaluation: the trained model is saved in {out}",
                file=sys.stderr,
            )
            return 130
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
    return 130 if interrupted else 0


def command_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    device = resolve_device(args.device)
    if args.store:
        writable_destination(args.checkpoint, what="checkpoint (--store)")
    checkpoint = load_checkpoint(args.checkpoint, map_location=device)
    config = checkpoint.model_config
    binarization = checkpoint.train_config.get("binarization", "dynamic")  # today's name (load_checkpoint)
    digits = load_digits("test", args.data_dir, binarization, config.image_size)
    if args.limit is not None:
        digits = digits.subset(slice(0, args.limit))
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
    out = writable_destination(args.out, what="--out")
    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.model
    labels = None
    if args.label is not None and not model.config.conditional:
        raise VAEError("--label is for a conditional model; this one ignores labels, so leave it out")
    if args.label is not None and args.label >= model.config.num_classes:
        raise VAEError(f"--label must be between 0 and {model.config.num_classes - 1}, got {args.label}")
    if model.config.conditional:
        labels = (
            torch.full((args.n,), args.label, dtype=torch.long)
            if args.label is not None
            else (torch.arange(args.n) % 10)
        )
    generator = torch.Generator().manual_seed(args.seed)
    _, probs = sample_prior(model, args.n, args.temperature, labels, generator)
    path = save_image_grid(probs, out, model.config.image_size)
    print(f"wrote {args.n} samples to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"train": command_train, "evaluate": command_evaluate, "sample": command_sample}[args.command]
    try:
        return handler(args)
    except (VAEError, ValueError, OSError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (MemoryError, torch.OutOfMemoryError) as exc:
        print(f"error: out of memory ({_one_line(exc)[:200]}); lower --batch-size or --k", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
