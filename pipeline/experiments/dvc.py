"""Thin wrappers around the ``dvc`` commands that queue, run and list experiments.

Every call runs the ``dvc`` executable next to the running Python (the project's
virtual environment) as a subprocess in ``cwd``, the root of the DVC repository.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Rows of `dvc queue status` whose experiment has not finished yet.
PENDING_STATUSES = {"Queued", "Running"}


class DvcError(RuntimeError):
    """A dvc command failed; the message contains the command and its error output."""


def find_dvc() -> str:
    """Return the dvc executable beside ``sys.executable``, else the one on PATH."""
    beside = Path(sys.executable).parent / "dvc"
    if beside.is_file():
        return str(beside)
    on_path = shutil.which("dvc")
    if on_path:
        return on_path
    raise DvcError(
        f"dvc executable not found beside {sys.executable} or on PATH; "
        "install the project with `pip install -e .`"
    )


def run_dvc(
    arguments: list[str], cwd: str | Path | None = None, timeout_s: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``dvc ARGUMENTS`` and return the finished process; raise DvcError on failure."""
    executable = find_dvc()
    # `dvc queue start` spawns its workers as plain `dvc`, so dvc's folder must be on PATH.
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(executable).parent), env.get("PATH", "")])
    # Output goes to files, not pipes: the queue workers that `dvc queue start` leaves
    # running inherit its output handles, and a pipe would stay open until they exit.
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.run(
                [executable, *arguments],
                cwd=cwd,
                env=env,
                stdout=stdout,
                stderr=stderr,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DvcError(f"`dvc {' '.join(arguments)}` timed out after {timeout_s} s") from None
        stdout.seek(0)
        stderr.seek(0)
        result = subprocess.CompletedProcess(
            process.args,
            process.returncode,
            stdout.read().decode("utf-8", errors="replace"),
            stderr.read().decode("utf-8", errors="replace"),
        )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise DvcError(f"`dvc {' '.join(arguments)}` failed (exit {result.returncode}): {detail}")
    return result


def exp_show_json(
    cwd: str | Path | None = None, all_commits: bool = False, timeout_s: float = 600.0
) -> list[dict[str, Any]]:
    """Return the parsed output of ``dvc exp show --json``."""
    arguments = ["exp", "show", "--json"]
    if all_commits:
        arguments.append("--all-commits")
    result = run_dvc(arguments, cwd=cwd, timeout_s=timeout_s)
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise DvcError(f"`dvc exp show --json` printed invalid JSON: {error}") from None


@dataclass
class QueueStatus:
    """Statuses by experiment name (newest first) and the worker counts."""

    tasks: dict[str, list[str]]
    active_workers: int
    idle_workers: int


_WORKERS = re.compile(r"Worker status: (\d+) active, (\d+) idle")


def queue_status(cwd: str | Path | None = None) -> QueueStatus:
    """Parse ``dvc queue status``.

    The table reads ``Task  Name  Created  Status``. Created is one or more words
    (a time today, a date before), so the name is the second word and the status the last.
    """
    output = run_dvc(["queue", "status"], cwd=cwd, timeout_s=120).stdout
    tasks: dict[str, list[str]] = {}
    active = idle = 0
    for line in output.splitlines():
        workers = _WORKERS.search(line)
        if workers:
            active, idle = int(workers.group(1)), int(workers.group(2))
            continue
        words = line.split()
        if len(words) < 4 or words[0] == "Task":
            continue
        tasks.setdefault(words[1], []).append(words[-1])
    return QueueStatus(tasks, active, idle)


def existing_experiment_names(cwd: str | Path | None = None) -> set[str]:
    """Return the names of all finished experiments and of all queue tasks."""
    listed = run_dvc(["exp", "list", "--all-commits", "--name-only"], cwd=cwd, timeout_s=300)
    names = {line.strip() for line in listed.stdout.splitlines() if line.strip()}
    return names | set(queue_status(cwd).tasks)


def start_queue(jobs: int, cwd: str | Path | None = None) -> None:
    """Start ``jobs`` queue workers; they exit once the queue is empty."""
    run_dvc(["queue", "start", "--jobs", str(jobs)], cwd=cwd, timeout_s=120)


def wait_for_queue(
    names: Iterable[str],
    cwd: str | Path | None = None,
    timeout_s: float = 3600.0,
    poll_s: float = 2.0,
    no_worker_grace_s: float = 30.0,
    missing_grace_s: float = 30.0,
) -> dict[str, str]:
    """Poll ``dvc queue status`` until none of ``names`` is queued or running.

    Returns the last status of each name; a name absent from the table for
    ``missing_grace_s`` is returned as "Missing". Raises TimeoutError naming the unfinished runs,
    and DvcError when runs stay queued with no worker for ``no_worker_grace_s`` (a worker
    that failed to start, or a queue never started).
    """
    names = list(names)
    start = time.monotonic()
    no_worker_since: float | None = None
    missing_since: dict[str, float] = {}
    while True:
        status = queue_status(cwd)
        latest = {name: _latest_status(status.tasks.get(name, [])) for name in names}
        now = time.monotonic()
        # A task can drop out of the table for a poll while it moves from queued to
        # running, so a name counts as lost only after missing_grace_s without a row.
        for name, state in latest.items():
            if state == "Missing":
                missing_since.setdefault(name, now)
            else:
                missing_since.pop(name, None)
        lost = sorted(
            name for name, since in missing_since.items() if now - since >= missing_grace_s
        )
        pending = sorted(
            name
            for name, state in latest.items()
            if state in PENDING_STATUSES or (state == "Missing" and name not in lost)
        )
        if not pending:
            return latest
        if status.active_workers + status.idle_workers > 0:
            no_worker_since = None
        elif no_worker_since is None:
            no_worker_since = now
        elif now - no_worker_since >= no_worker_grace_s:
            raise DvcError(
                f"{len(pending)} experiments are queued but no queue worker has run for "
                f"{no_worker_grace_s:.0f} s; start one with `dvc queue start` and see "
                ".dvc/tmp/exps/celery/*.out if it stops at once"
            )
        if now - start >= timeout_s:
            raise TimeoutError(
                f"{len(pending)} experiments still queued or running after {timeout_s:.0f} s: "
                f"{pending[:5]}{' ...' if len(pending) > 5 else ''}"
            )
        logger.info("waiting for %d of %d experiments", len(pending), len(names))
        time.sleep(poll_s)


def _latest_status(statuses: list[str]) -> str:
    # A name queued twice has two rows; any pending row means it is not finished.
    for status in statuses:
        if status in PENDING_STATUSES:
            return status
    return statuses[0] if statuses else "Missing"
