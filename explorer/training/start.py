"""From the Train form's fields to a started run: `start_run(form, ...)`.

The form's values are read with vae_core's settings readers (the CLI's too), checked against this
server's limits (ServerLimits.from_env: $VAE_MAX_*) and only then is a model built. Every refusal is
a ConfigError whose message says what to change.
"""

from __future__ import annotations

from collections.abc import Callable

from explorer.state.registry import ModelEntry
from explorer.training import jobs
from vae_core import ConfigError, ModelConfig, TrainConfig
from vae_core.config import MAX_LATENT_DIM, parse_hidden, setting_number
from vae_core.limits import ServerLimits
from vae_core.model_kinds import offered_kinds

KINDS = {label: (kind, conditional) for label, kind, conditional in offered_kinds()}  # "MLP": ("mlp", False)
OBJECTIVES = ("ELBO", "IWAE")


def model_entry(job: jobs.TrainingJob) -> ModelEntry:
    """A finished run as the model pickers list it."""
    return ModelEntry(key=job.key, checkpoint=job.checkpoint(), origin="trained", name=job.name)


def share_when_done(models: dict) -> Callable[[jobs.TrainingJob], None]:
    """A job's on_end: put the model into `models`, the plain dict behind a session's model list.

    Called in the training thread when a run ends. The dict was captured in the script thread;
    inserting into it is one atomic dict operation, so other pages offer the model even if the user
    never comes back to Train. (Assigning through `st.session_state` from a thread would be lost.)
    """

    def on_end(job: jobs.TrainingJob) -> None:
        models.setdefault(job.key, model_entry(job))

    return on_end


def start_run(
    form: dict,
    load_data: Callable[[str], jobs.TrainingData],
    *,
    number: int,
    is_watched: Callable[[], bool] | None = None,
    on_end: Callable[[jobs.TrainingJob], None] | None = None,
) -> jobs.TrainingJob:
    """A started TrainingJob for the form's values ({"kind", "latent", "hidden", "data", "epochs",
    "batch", "lr", "seed", "beta", "objective", "k", "warmup", "device"}), or a ConfigError (or
    work_admission.ServerBusy, from the server's budget for heavy work).

    `load_data` gives the digits of the form's data choice (loaded once per server); their
    validation size sets the memory estimate, so it is called once the model's settings are read.
    """
    limits = ServerLimits.from_env()
    if form["kind"] not in KINDS or form["objective"] not in OBJECTIVES:
        raise ConfigError(f"unknown model {form['kind']!r} or objective {form['objective']!r}")
    kind, conditional = KINDS[form["kind"]]
    hidden = parse_hidden(form["hidden"])
    limits.check_hidden(hidden)
    model_config = ModelConfig(
        kind=kind, latent_dim=setting_number(form["latent"], "Latent size", 1, MAX_LATENT_DIM, whole=True),
        hidden=hidden, conditional=conditional,
    )  # fmt: skip
    iwae = form["objective"] == "IWAE"
    data = load_data(form["data"])
    # The number inputs have no bounds of their own: Streamlit silently swaps a value outside them for
    # the default (1e9 epochs became 3), where the person should be told what this server allows.
    train_config = TrainConfig(
        epochs=setting_number(form["epochs"], "Epochs"),
        batch_size=setting_number(form["batch"], "Batch size", whole=True),
        lr=setting_number(form["lr"], "learning rate", 0, 1, low_open=True),
        beta=setting_number(form["beta"], "β", 0, 100), objective=form["objective"].lower(),
        k=setting_number(form["k"], "IWAE samples k", whole=True) if iwae else 1,
        warmup_epochs=setting_number(form["warmup"], "KL warm-up epochs", 0, 100),
        seed=setting_number(form["seed"], "Seed", 0, 2**31 - 1, whole=True), device=form["device"],
        num_threads=1, log_every=jobs.LOG_EVERY, validation_size=len(data.validation),
    )  # fmt: skip
    job = jobs.TrainingJob(  # checks the settings against `limits` before building anything
        model_config, train_config, data, is_watched=is_watched, on_end=on_end, number=number, limits=limits
    )
    return job.start(max_active=jobs.MAX_ACTIVE_JOBS)  # admitted there, once
