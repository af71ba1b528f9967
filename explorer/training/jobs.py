"""A training run in its own thread: start, pause, resume, stop, the idle watchdog, the server's caps,
and the loop the thread runs (a `vae_core.Trainer`'s events into the job's state).

The plain state the loop writes, and the live views it takes, live in history.py; the data a run
trains on is loaded here.

A `TrainingJob` owns one `vae_core.Trainer` and one thread that iterates `Trainer.run()`. The
thread never touches Streamlit: it writes plain Python/numpy state under the job's lock, and the
page reads a copy of it (`snapshot()`) from a fragment that reruns every second. Control goes
the other way through `threading.Event`s: stop (the Trainer's own stop event), pause/resume (the
thread parks between events), and a watchdog: a job that nobody has `touch()`ed for
`idle_timeout_s` stops itself, so a closed tab cannot keep a CPU busy forever.

About threads: `TrainConfig(num_threads=1)` makes the Trainer call `torch.set_num_threads(1)` in
the training thread. In this torch build (OpenMP backend) that is not process-global in the plain
sense: threads that already ran torch code keep their own pool size, but the value is also stored
globally and every thread *created afterwards* starts with it. Streamlit runs each script rerun in a
fresh thread, so after the first run starts, the app's other inference runs with one intra-op
thread too. On a small shared CPU that is what we want: two threads per run under any other load
were measured 10x slower than one (oversubscription).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from explorer.state.work_admission import Ticket, server_work
from explorer.training.history import (
    HISTORY_SIZE,
    JobSnapshot,
    LiveViews,
    SnapshotHistory,
    fixed_view_inputs,
    next_snapshot_at,
    take_views,
)
from vae_core import (
    Checkpoint,
    ConfigError,
    DataError,
    DigitImages,
    ModelConfig,
    TrainConfig,
    Trainer,
    VAEError,
    checkpoint_bytes,
    config_to_dict,
    load_train_validation,
)
from vae_core.heap import return_freed_heap_to_os
from vae_core.limits import MB, RunMemory, ServerLimits, env_number, estimate_run_memory
from vae_core.model_kinds import kind_label

# A bad value in the environment falls back to the default with a log warning (never a crash).
IDLE_TIMEOUT_S = env_number("VAE_TRAIN_IDLE_TIMEOUT_S", 60.0)
# Snapshots (the pictures, latent map and KL bars) come at most once a second, and take at most 3%
# of the run's time (history.next_snapshot_at). Polls outnumber them: a poll that finds the
# same snapshot re-sends the same pictures, which the page and the browser then reuse.
SNAPSHOT_EVERY_S = 1.0
SNAPSHOT_SHARE = 0.03
MAX_ACTIVE_JOBS = env_number("VAE_MAX_TRAINING_JOBS", 2, integer=True)  # per server process


LOG_EVERY = 10  # steps per progress event: pause and stop answer within this many steps

_ids = itertools.count(1)
_active: weakref.WeakSet[TrainingJob] = weakref.WeakSet()
_active_lock = threading.Lock()


def active_job_count() -> int:
    """Jobs of every session of this server whose thread is still training."""
    with _active_lock:
        return sum(1 for job in _active if job.is_alive())


# ----------------------------------------------------------------------------------------- data
DATA_FULL = "full"
DATA_SAMPLE = "sample"


@dataclass(frozen=True)
class TrainingData:
    train: DigitImages
    validation: DigitImages
    note: str  # what the page tells the user about these digits


def load_training_data(source: str = DATA_FULL, allow_download: bool = True) -> TrainingData:
    """MNIST's 60k training digits (last 10k held out), or the bundled 5k sample (last 500 held out).

    "full" falls back to the sample when $VAE_DATA_DIR is unset and no download is possible, and
    says so in `note`. Pixels stay uint8: a Trainer on the CPU slices them without a copy.
    """
    if source not in (DATA_FULL, DATA_SAMPLE):
        raise DataError(f"training data must be {DATA_FULL!r} or {DATA_SAMPLE!r}, got {source!r}")
    train, validation = load_train_validation(
        allow_download=allow_download, allow_sample=True, sample_only=source == DATA_SAMPLE
    )
    note = f"{len(train):,} training and {len(validation):,} validation digits from {train.source}"
    if source == DATA_FULL and len(train) + len(validation) < 20_000:
        note += " (full MNIST is not available here, so the bundled sample is used)"
    return TrainingData(train, validation, note)


def _default_name(model_config: ModelConfig, train_config: TrainConfig, job_id: int) -> str:
    kind = kind_label(model_config.kind, model_config.conditional)
    objective = f"IWAE k={train_config.k}" if train_config.objective == "iwae" else "ELBO"
    return f"run {job_id}: {model_config.latent_dim}-D {kind}, {train_config.epochs:g} ep, {objective}"


# ---------------------------------------------------------------------------------------- job
RUNNING, PAUSED, STOPPED, FINISHED, FAILED = "running", "paused", "stopped", "finished", "failed"
ENDED = (STOPPED, FINISHED, FAILED)


class TrainingJob:
    """One training run in its own thread. Construct (may raise ConfigError), then `start()`."""

    def __init__(
        self,
        model_config: ModelConfig,
        train_config: TrainConfig,
        data: TrainingData,
        name: str | None = None,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        snapshot_every_s: float = SNAPSHOT_EVERY_S,
        snapshot_share: float = SNAPSHOT_SHARE,
        is_watched: Callable[[], bool] | None = None,
        on_end: Callable[[TrainingJob], None] | None = None,
        history_size: int = HISTORY_SIZE,
        number: int | None = None,
        limits: ServerLimits | None = None,
    ):
        self.id = next(_ids)  # server-wide: keys the model in pickers and caches
        self.key = f"trained:{self.id}"
        # What the person sees ("run 2"): counted per session by the caller, else the server-wide id.
        self.number = self.id if number is None else number
        self.name = name or _default_name(model_config, train_config, self.number)
        self.model_config = model_config
        self.train_config = train_config
        self.data_note = data.note
        self.idle_timeout_s = idle_timeout_s
        self.snapshot_every_s = snapshot_every_s
        if not 0 < snapshot_share <= 1:
            raise ValueError(f"snapshot_share is a share of the run's time in (0, 1], got {snapshot_share}")
        self.snapshot_share = snapshot_share
        self._is_watched = is_watched  # e.g. "the browser tab is still connected"
        self._on_end = on_end
        # Checked before anything is allocated: with `limits` (a public server) a run above them is
        # refused with a ConfigError that names the setting to lower.
        self.memory: RunMemory = (
            limits.check(model_config, train_config) if limits is not None
            else estimate_run_memory(model_config, train_config)
        )  # fmt: skip
        # Built here, in the caller's thread, so bad settings raise before any thread exists.
        self.trainer: Trainer | None = Trainer(
            model_config, train_config, data.train, data.validation,
            between_phases=return_freed_heap_to_os,  # the estimate's phases take turns (limits.py)
        )  # fmt: skip
        self.model = self.trainer.model
        self.device = str(self.trainer.device)
        self._view_inputs = fixed_view_inputs(self.model, train_config.seed, data.validation)

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._parked = threading.Event()
        self._thread: threading.Thread | None = None
        self._events: list[dict] = []
        # The untrained model is the first snapshot: time travel and the GIF start from the blob
        # every VAE begins as, and the page has pictures to offer before the first event.
        self._history = SnapshotHistory(history_size)
        self._history.add(self._compute_views(0, 0.0))
        self._status = RUNNING
        self._error: str | None = None
        self._stop_reason: str | None = None
        self._last_touch = time.monotonic()
        self._active_s = 0.0
        self._metrics: dict = {}
        self._curve: list[dict] = []
        self._checkpoint_bytes: bytes | None = None

    # -- control, from any thread ------------------------------------------------------------
    def start(self, max_active: int | None = None) -> TrainingJob:
        """Start training: the one place a run is admitted. Refused with a ConfigError if the server
        already trains `max_active` runs, and with work_admission.ServerBusy if its memory estimate
        does not fit the server's budget for heavy work beside everything else in flight (runs and
        computations of every session; a run holds its share until its thread ends, and does not
        queue: it would hold the page for minutes).

        Counting and starting happen under one lock: a count taken before the job was built would let
        sessions that press Start at the same moment all through (building a job takes up to a second).
        """
        if self._thread is not None:
            raise RuntimeError("a TrainingJob starts once")
        self.touch()
        with _active_lock:
            running = sum(1 for job in _active if job.is_alive())
            if max_active is not None and running >= max_active:
                raise ConfigError(
                    f"this server is already training {running} models, its limit; "
                    "start again when one has finished"
                )
            ticket = server_work().acquire(self.memory.peak / MB, "this training run", wait_s=0)
            thread = threading.Thread(
                target=self._run_admitted, args=(ticket,), name=f"vae-train-{self.id}", daemon=True
            )
            self._thread = thread
            _active.add(self)
            thread.start()  # inside the lock: the next count already sees this thread alive
        return self

    def _run_admitted(self, ticket: Ticket) -> None:
        try:
            self._run()
        finally:
            ticket.release()  # the run's share of the budget returns, and its freed heap goes back to the OS

    def touch(self) -> None:
        """Someone is watching: push the idle watchdog back."""
        self._last_touch = time.monotonic()

    def pause(self) -> None:
        with self._lock:
            if self._status == RUNNING:
                self._status = PAUSED
                self._resume.clear()

    def resume(self) -> None:
        with self._lock:
            if self._status == PAUSED:
                self._status = RUNNING
                self._parked.clear()
                self._resume.set()
        self.touch()

    def stop(self, reason: str = "user") -> None:
        """Ask the run to end; it finishes the current step, validates, and keeps its model."""
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason
        self._stop.set()
        self._resume.set()  # a parked thread must wake up to notice

    def wait_parked(self, timeout: float) -> bool:
        """After pause(): block until the thread really sits between two events."""
        return self._parked.wait(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.is_alive()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return JobSnapshot(
                job_id=self.id,
                status=self._status,
                events=list(self._events),
                history=self._history.snapshots(),
                error=self._error,
                stop_requested=self._stop.is_set(),
                stop_reason=self._stop_reason,
                active_s=self._active_s,
            )

    # -- results, once the run has ended -----------------------------------------------------
    @property
    def has_model(self) -> bool:
        """A run that finished or was stopped keeps its model; a failed one has nothing worth keeping."""
        return self.status in (STOPPED, FINISHED)

    def metrics(self) -> dict:
        with self._lock:
            return dict(self._metrics)

    def checkpoint(self) -> Checkpoint:
        self._require_model()
        return Checkpoint(
            self.model, self.model_config, config_to_dict(self.train_config), self.metrics(), self._curve
        )

    def checkpoint_bytes(self) -> bytes:
        """The safetensors file, built once: the page offers it on every rerun after the run."""
        self._require_model()
        with self._lock:
            if self._checkpoint_bytes is None:
                self._checkpoint_bytes = checkpoint_bytes(
                    self.model, self.train_config, self._metrics, self._curve
                )
            return self._checkpoint_bytes

    def metrics_csv(self) -> str:
        """Every event as one row; validation terms as val_* columns."""
        events = self.snapshot().events
        keys = sorted({k for e in events for k in (e.get("validation") or {})})
        base = ["kind", "step", "total_steps", "epoch", "images_seen", "recon", "kl", "elbo", "beta",
                "images_per_s", "elapsed_s", "stopped"]  # fmt: skip
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(base + [f"val_{k}" for k in keys])
        for event in events:
            validation = event.get("validation") or {}
            writer.writerow([event[k] for k in base] + [validation.get(k, "") for k in keys])
        return out.getvalue()

    def _require_model(self) -> None:
        if not self.has_model:
            raise RuntimeError(f"run {self.id} is {self.status}: there is no finished model to save")

    # -- the training thread's stop and pause checks (its loop: _run, below) ---------------
    def _idle(self) -> bool:
        if time.monotonic() - self._last_touch <= self.idle_timeout_s:
            return False
        if self._is_watched is not None:
            try:
                if self._is_watched():
                    return False
            except Exception:  # a broken liveness probe must not keep a job alive forever
                pass
        return True

    def _wait_while_paused(self) -> None:
        while not self._resume.is_set() and not self._stop.is_set():
            self._parked.set()
            if self._idle():
                self.stop("idle")
            self._resume.wait(0.2)
        self._parked.clear()

    # ------------------------------------------------------------------ the thread
    def _compute_views(self, step: int, epoch: float) -> LiveViews:
        return take_views(self.model, self._view_inputs, step, epoch)

    def _run(self) -> None:
        trainer = self.trainer
        next_views = -math.inf
        resumed_at = time.monotonic()
        ended_by = FINISHED
        try:
            for event in trainer.run(self._stop):
                now = time.monotonic()
                record = event.as_dict()
                views = None
                if event.kind != "step" or now >= next_views:
                    views = self._compute_views(event.step, event.epoch)
                    next_views = next_snapshot_at(
                        now, time.monotonic() - now, self.snapshot_every_s, self.snapshot_share
                    )
                with self._lock:
                    self._events.append(record)
                    if views is not None:
                        self._history.add(views)
                    self._active_s += time.monotonic() - resumed_at
                if event.kind == "done":
                    ended_by = STOPPED if event.stopped else FINISHED
                    break
                if self._idle():
                    self.stop("idle")
                self._wait_while_paused()
                resumed_at = time.monotonic()
            self.model.requires_grad_(False)
            self.model.to("cpu")  # other pages run inference on the CPU
            metrics = trainer.metrics()
            metrics.update(device=self.device, data=self.data_note, name=self.name)
            curve = trainer.curve()
            with self._lock:
                self._metrics, self._curve = metrics, curve
                self._status = ended_by
        except Exception as exc:  # shown on the page instead of dying silently in a thread
            message = str(exc) if isinstance(exc, VAEError) else f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._status, self._error = FAILED, message
        finally:
            self.trainer = trainer = None  # the optimiser state and any device copy of the data go now
            self._view_inputs = {}
        if self._on_end is not None and self.has_model:
            try:
                self._on_end(self)
            except Exception as exc:  # the model is kept even if the callback fails
                with self._lock:
                    self._error = f"the run ended but could not be shared with other pages: {exc}"
