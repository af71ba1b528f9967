"""One server-wide admission for expensive work: a memory budget that every heavy computation asks.

    with server_work().admit(cost_mb, "the IWAE bounds of best"):  # may wait a little, or
        ...                                                          # raise ServerBusy

A Streamlit server is one process shared by every visitor; on a small host (Streamlit Community
Cloud gives the whole app ~690 MB) two visitors pressing the same expensive button at once were
enough to get it killed (two IWAE-bound computations: OOM within 1.3 s). So work that can cost
hundreds of MB or seconds (training runs, bounds against k, comparisons, posterior averages,
completions, loading an upload) declares an estimate of its peak memory first, and runs only while
all work admitted together stays within the server's budget ($VAE_WORK_MEMORY_MB). Otherwise it
waits in a first-come-first-served queue for a few seconds ($VAE_WORK_WAIT_S), and past that, or
when the queue is full, gets `ServerBusy`, whose message a page shows as it is.

Pure and thread-safe (no Streamlit, no torch): pages, the training jobs and tests share it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# Sized for Streamlit Cloud's ~690 MB: the server itself holds ~450 MB (torch, the models, the digits,
# a few sessions), visitors' models up to 80 MB (registry.SessionModelBudget), and work admitted by
# estimate up to 200 MB really takes 0.5-0.85 of it (measured): about 650 MB at the very worst.
WORK_MEMORY_ENV, WORK_MEMORY_MB = "VAE_WORK_MEMORY_MB", 200.0
WORK_WAIT_ENV, WORK_WAIT_S = "VAE_WORK_WAIT_S", 8.0
MAX_WAITING = 8  # a longer queue would only hold scripts (and their sessions) for nothing


class ServerBusy(RuntimeError):
    """The server cannot take this work now; the message says so politely and what to do."""


class WorkTooLarge(ServerBusy):
    """The work needs more than the whole budget: waiting would never help."""


@dataclass(eq=False)
class Ticket:
    """Admitted work: its memory stays counted until `release()` (once; later calls do nothing)."""

    cost_mb: float
    what: str
    _admission: WorkAdmission = field(repr=False)
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        self._admission._release(self)


class WorkAdmission:
    """A memory budget (MB) shared by all work in flight, with a short FIFO queue in front of it."""

    def __init__(
        self,
        budget_mb: float,
        wait_s: float = WORK_WAIT_S,
        max_waiting: int = MAX_WAITING,
        after_work: Callable[[], None] | None = None,
    ):
        self.budget_mb = float(budget_mb)
        self._after_work = after_work  # called when a piece of work has ended, outside the lock
        self.wait_s = float(wait_s)
        self.max_waiting = max_waiting
        self._changed = threading.Condition()
        self._admitted: list[Ticket] = []
        self._waiting: deque[object] = deque()  # one token per waiting caller, in arrival order
        self.peak_mb = 0.0  # the most ever admitted at once (benchmarks and tests read it)

    @classmethod
    def from_env(cls) -> WorkAdmission:
        """$VAE_WORK_MEMORY_MB (default 200) and $VAE_WORK_WAIT_S (default 8); a bad value is
        ignored with a log warning. Ended work hands its freed heap back to the OS: glibc keeps it in
        the arena of the thread that freed it (one per script thread), where it stayed charged to
        the container after the computation (measured: five Overviews' latent-dimension passes at
        once left 129 MB resident, 46 MB once trimmed)."""
        from vae_core.heap import return_freed_heap_to_os  # here: no torch at import
        from vae_core.limits import env_number

        return cls(
            env_number(WORK_MEMORY_ENV, WORK_MEMORY_MB),
            env_number(WORK_WAIT_ENV, WORK_WAIT_S),
            after_work=return_freed_heap_to_os,
        )

    @property
    def in_use_mb(self) -> float:
        with self._changed:
            return sum(ticket.cost_mb for ticket in self._admitted)

    def running(self) -> list[str]:
        """What is admitted now, oldest first."""
        with self._changed:
            return [ticket.what for ticket in self._admitted]

    def acquire(self, cost_mb: float, what: str, wait_s: float | None = None) -> Ticket:
        """Admit `what` (needing about `cost_mb` MB at its peak) now, or after waiting up to `wait_s`
        seconds (default: this admission's `wait_s`; 0 for work that should not wait) for earlier work
        to finish. Raises ServerBusy (WorkTooLarge when `cost_mb` exceeds the whole budget).
        The caller must `release()` the ticket; `admit` does that for a `with` block."""
        cost_mb = max(0.0, float(cost_mb))
        if cost_mb > self.budget_mb:
            raise WorkTooLarge(
                f"{_capitalised(what)} would need about {cost_mb:,.0f} MB, more than the {self.budget_mb:,.0f} MB "
                "this server allows for heavy work at once: choose something smaller."
            )
        wait_s = self.wait_s if wait_s is None else wait_s
        deadline = time.monotonic() + max(0.0, wait_s)
        token = object()
        with self._changed:
            if len(self._waiting) >= self.max_waiting and wait_s > 0:
                raise self._busy(what, cost_mb)
            self._waiting.append(token)
            try:
                # First come, first served: only the head of the queue may take room, so a large
                # piece of work is not overtaken forever by small ones.
                while self._waiting[0] is not token or self._in_use() + cost_mb > self.budget_mb:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise self._busy(what, cost_mb)
                    self._changed.wait(left)
                ticket = Ticket(cost_mb, what, self)
                self._admitted.append(ticket)
                self.peak_mb = max(self.peak_mb, self._in_use())
                return ticket
            finally:
                self._waiting.remove(token)
                self._changed.notify_all()  # the next in the queue may fit now

    @contextmanager
    def admit(self, cost_mb: float, what: str, wait_s: float | None = None) -> Iterator[Ticket]:
        """`acquire` for the duration of a `with` block (released however the block ends)."""
        ticket = self.acquire(cost_mb, what, wait_s)
        try:
            yield ticket
        finally:
            ticket.release()

    # -- inside the lock ----------------------------------------------------------------------
    def _in_use(self) -> float:
        return sum(ticket.cost_mb for ticket in self._admitted)

    def _busy(self, what: str, cost_mb: float) -> ServerBusy:
        return ServerBusy(
            f"The server is busy with other visitors' work ({self._in_use():,.0f} of the {self.budget_mb:,.0f} MB "
            f"it keeps for heavy work are in use, and {what} needs about {cost_mb:,.0f} MB). "
            "Try again in a moment."
        )

    def _release(self, ticket: Ticket) -> None:
        with self._changed:
            if ticket._released:
                return
            ticket._released = True
            self._admitted.remove(ticket)
            self._changed.notify_all()
        if self._after_work is not None:
            self._after_work()


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


_server: WorkAdmission | None = None
_server_lock = threading.Lock()


def server_work() -> WorkAdmission:
    """This server's admission, made from the environment on first use (tests replace `_server`)."""
    global _server
    with _server_lock:
        if _server is None:
            _server = WorkAdmission.from_env()
        return _server
