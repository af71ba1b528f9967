"""How many visitors a server admits: the arithmetic from memory, the container's limit as the
kernel states it (cgroup v1 and v2 files laid out in a temporary directory), the deployer's
override, and how many first renders may queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorer.state.capacity import (
    MIB,
    SERVER_BASE_MB,
    SESSION_MB,
    TRAINING_RESERVE_MB,
    RenderTimes,
    cgroup_memory_limit,
    max_sessions_from_env,
    renders_allowed_in_queue,
    server_capacity,
    sessions_for_memory,
)


def test_sessions_fill_what_the_server_and_training_leave():
    assert sessions_for_memory(690, server_base_mb=450, training_reserve_mb=150, session_mb=2) == 45
    assert sessions_for_memory(1024, server_base_mb=450, training_reserve_mb=150, session_mb=2) == 212
    # 1.95 sessions' worth left over makes one session
    assert sessions_for_memory(603.9, server_base_mb=450, training_reserve_mb=150, session_mb=2) == 1
    assert sessions_for_memory(605.9, server_base_mb=450, training_reserve_mb=150, session_mb=2) == 2


def test_a_server_too_small_by_the_arithmetic_still_serves_one_visitor():
    assert sessions_for_memory(300) == 1
    assert sessions_for_memory(SERVER_BASE_MB + TRAINING_RESERVE_MB) == 1


def test_each_gigabyte_more_admits_the_same_number_more():
    per_gb = sessions_for_memory(2048) - sessions_for_memory(1024)
    assert abs(per_gb - 1024 / SESSION_MB) <= 1  # floors on both sides: within one


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v1_limit_is_the_tightest_along_the_path(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")  # the root: unlimited
    _write(root / "memory" / "class" / "memory.limit_in_bytes", str(690 * MIB))
    _write(root / "memory" / "class" / "app" / "memory.limit_in_bytes", str(2048 * MIB))
    proc = "12:pids:/class/app\n4:memory:/class/app\n0::/\n"
    assert cgroup_memory_limit(proc, root) == 690 * MIB


def test_cgroup_v1_without_a_limit_gives_none(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    assert cgroup_memory_limit("4:memory:/\n", root) is None


def test_inside_a_container_the_host_path_is_absent_and_the_mount_root_is_read(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "memory" / "memory.limit_in_bytes", str(690 * MIB))
    assert cgroup_memory_limit("4:memory:/docker/0123abcd\n", root) == 690 * MIB


def test_cgroup_v2_memory_max(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "cpu memory pids\n")
    _write(root / "app.slice" / "memory.max", f"{1024 * MIB}\n")
    _write(root / "app.slice" / "app" / "memory.max", "max\n")
    assert cgroup_memory_limit("0::/app.slice/app\n", root) == 1024 * MIB
    _write(root / "app.slice" / "memory.max", "max\n")
    assert cgroup_memory_limit("0::/app.slice/app\n", root) is None


@pytest.mark.parametrize("text", ["abc", "0", "-3", "2.5", "1e3", " ", ""])
def test_max_sessions_accepts_only_a_positive_whole_number(text):
    assert max_sessions_from_env({"VAE_MAX_SESSIONS": text}) is None


def test_the_deployers_number_wins_over_memory():
    chosen = server_capacity({"VAE_MAX_SESSIONS": " 120 "}, memory=(690.0, "test"))
    assert (chosen.sessions, chosen.memory_mb) == (120, None)
    assert "VAE_MAX_SESSIONS" in chosen.describe()
    computed = server_capacity({"VAE_MAX_SESSIONS": "lots"}, memory=(690.0, "a test container"))
    assert computed.sessions == sessions_for_memory(690.0)
    assert "a test container" in computed.describe()


def test_renders_queue_so_the_last_is_done_within_the_target():
    # 4 at a time, 1 s each: 8 queued are done in 2 s
    assert renders_allowed_in_queue(1.0, 4, wait_target_s=2.0, most=32) == 8
    assert renders_allowed_in_queue(0.1, 4, wait_target_s=2.0, most=32) == 32  # capped
    assert renders_allowed_in_queue(30.0, 4, wait_target_s=2.0, most=32) == 1  # a cold start: one at a time


def test_render_times_follow_the_latest_renders():
    times = RenderTimes(first_guess_s=0.3, weight=0.5)
    times.record(1.3)
    assert times.mean_s == pytest.approx(0.8)
    for _ in range(20):
        times.record(0.1)
    assert times.mean_s == pytest.approx(0.1, abs=1e-4)
