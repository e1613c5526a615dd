"""Kill a save at many points and check what it leaves: the harness behind the crash-safety tests and benchmarks.

A save runs in a forked child process. The child counts the Python lines it executes in chosen source files
(by default `hf_semtok/io_utils.py`, the file-set modules of `hf_semtok/tokenizer/` and `shutil.py`) and calls
`os._exit` at the k-th one: the process dies as under `SIGKILL`, without running `finally` blocks or `__exit__`, so
every kill point is reproducible. A first run without a kill counts the lines; the kill points are spread over them. Optional
random-delay `SIGKILL`s also catch the instants inside C calls (a half-written file, a half-removed tree).

Usage (see `tests/test_atomic_saves.py`):

    from kill_harness import kill_during_save

    summary = kill_during_save(save=save_b, check=lambda: "old" if same(target, A) else "new", reset=write_a)

POSIX only (`os.fork`). Fork after the parent has imported everything the save needs, with one torch thread.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hf_semtok import io_utils
from hf_semtok.tokenizer import file_locks, file_sets, manifests, safe_paths

__all__ = [
    "FILE_SET_SOURCES",
    "KILLED_EXIT_CODE",
    "kill_during_save",
    "run_here",
    "run_in_child",
    "tree_contents",
]

KILLED_EXIT_CODE = 87  # what a child killed at a trace point exits with
#: The source files of the file-set saves (`file_sets.py` and the two modules it is built on).
FILE_SET_SOURCES = [file_sets.__file__, file_locks.__file__, manifests.__file__, safe_paths.__file__]
_FAILED_EXIT_CODE = 86  # the save raised in the child


def _default_trace_files() -> list[str]:
    return [io_utils.__file__, *FILE_SET_SOURCES, shutil.__file__]


def _tracer(files: set[str], kill_at: int | None, counter: list[int]) -> Callable:
    known: dict[Any, bool] = {}

    def local(frame, event, arg):
        if event == "line":
            counter[0] += 1
            if kill_at is not None and counter[0] >= kill_at:
                os._exit(KILLED_EXIT_CODE)
        return local

    def on_call(frame, event, arg):
        code = frame.f_code
        traced = known.get(code)
        if traced is None:
            traced = known[code] = os.path.realpath(code.co_filename) in files
        return local if traced else None

    return on_call


def run_in_child(
    save: Callable[[], Any],
    kill_at: int | None = None,
    trace_files: Iterable[str | os.PathLike] | None = None,
    kill_after_s: float | None = None,
    timeout_s: float = 60.0,
) -> tuple[str, int]:
    """Run `save()` in a forked child, killed at its `kill_at`-th traced line or `SIGKILL`ed after `kill_after_s`.

    Returns:
        `(outcome, traced_lines)`: outcome is `"completed"`, `"killed"` (trace point) or `"sigkill"`;
        `traced_lines` is the number of traced lines the child ran (only known when it completed, else -1).

    Raises:
        RuntimeError: if `save()` raised in the child (its traceback goes to stderr) or the child hung.
    """
    files = {os.path.realpath(f) for f in (trace_files or _default_trace_files())}
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the caller's stack
        os.close(read_fd)
        code = 0
        try:
            counter = [0]
            sys.settrace(_tracer(files, kill_at, counter))
            try:
                save()
            finally:
                sys.settrace(None)
            os.write(write_fd, str(counter[0]).encode())
        except BaseException:
            traceback.print_exc()
            code = _FAILED_EXIT_CODE
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_fd)
    outcome = None
    try:
        if kill_after_s is not None:
            time.sleep(kill_after_s)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout_s
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise RuntimeError(f"The save in child {pid} ran past {timeout_s} s (kill_at={kill_at}).")
            time.sleep(0.002)
        data = b""
        while chunk := os.read(read_fd, 64):
            data += chunk
    finally:
        os.close(read_fd)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        outcome = "sigkill"
    elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == KILLED_EXIT_CODE:
        outcome = "killed"
    elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        outcome = "completed"
    else:
        raise RuntimeError(f"The save failed in the child (status {status}, kill_at={kill_at}); see stderr.")
    return outcome, int(data) if outcome == "completed" and data else -1


def run_here(save: Callable[[], Any], trace_files: Iterable[str | os.PathLike] | None = None) -> int:
    """Run `save()` in this process to completion; return how many traced lines it ran (the kill points)."""
    files = {os.path.realpath(f) for f in (trace_files or _default_trace_files())}
    counter = [0]
    previous = sys.gettrace()
    sys.settrace(_tracer(files, None, counter))
    try:
        save()
    finally:
        sys.settrace(previous)
    return counter[0]


def kill_during_save(
    save: Callable[[], Any],
    check: Callable[[], str],
    *,
    reset: Callable[[], Any] | None = None,
    check_clean: Callable[[], Any] | None = None,
    n_points: int = 40,
    random_kills: int = 0,
    seed: int = 0,
    trace_files: Iterable[str | os.PathLike] | None = None,
) -> dict[str, Any]:
    """Kill `save()` at `n_points` points (plus `random_kills` random-delay `SIGKILL`s) and `check()` each result.

    `save()` first runs once in this process, traced, to count its lines; then, for each kill: `reset()` (when given: e.g. write the old version), run `save()` in a child killed at the
    chosen point, then `check()`, which raises (e.g. `AssertionError`) if what is left is not a complete version
    and otherwise returns a label of what it found (`"old"`, `"new"`). With `check_clean`, a complete `save()`
    then runs (in this process) and `check_clean()` must accept its result (the next save succeeds and clears the leftovers).
    Without `reset`, kills follow each other on what the previous one left.

    Args:
        save: The save to kill. Killed runs happen in forked children; uninterrupted ones in this process.
        check: Inspects the saved location in the parent; raises on a broken state, returns a label.
        reset: Prepares the state before each kill.
        check_clean: Inspects the location after an uninterrupted save that follows a kill.
        n_points: How many trace points to kill at (all of them when the save has fewer traced lines).
        random_kills: How many extra kills by `SIGKILL` after a random delay within the save's duration.
        seed: Seed of the choice of points and delays.
        trace_files: Source files whose executed lines are the kill points (default: `hf_semtok/io_utils.py`,
            the file-set modules of `hf_semtok/tokenizer/` and `shutil.py`).

    Returns:
        `dict`: `traced_lines` (lines the uninterrupted save ran), `kill_points`, `outcomes` (count of
        `killed`/`sigkill`/`completed`), `states` (count of `check()` labels), `seconds`.

    Raises:
        AssertionError: from `check`/`check_clean`, prefixed with the kill point.
    """
    began = time.perf_counter()
    rng = random.Random(seed)
    if reset is not None:
        reset()
    t = time.perf_counter()
    total = run_here(save, trace_files=trace_files)
    duration = time.perf_counter() - t
    if total < 1:
        raise RuntimeError("The uninterrupted save traced no lines; check `trace_files`.")
    check()
    if total <= n_points:
        points = list(range(1, total + 1))
    else:  # evenly spread, each jittered within its stride, so every phase of the save is hit
        stride = total / n_points
        points = sorted({min(total, 1 + int(i * stride + rng.random() * stride)) for i in range(n_points)})
    outcomes: Counter[str] = Counter()
    states: Counter[str] = Counter()
    plan = [("line", p) for p in points] + [
        ("delay", rng.uniform(0.0, duration)) for _ in range(random_kills)
    ]
    for kind, where in plan:
        if reset is not None:
            reset()
        if kind == "line":
            outcome, _ = run_in_child(save, kill_at=where, trace_files=trace_files)
        else:
            outcome, _ = run_in_child(save, trace_files=trace_files, kill_after_s=where)
        outcomes[outcome] += 1
        try:
            states[check()] += 1
            if check_clean is not None:
                save()  # in this process: an uninterrupted save needs no child
                check_clean()
        except AssertionError as exc:
            raise AssertionError(f"after a kill at {kind} {where} of {total}: {exc}") from exc
    return {
        "traced_lines": total,
        "kill_points": points,
        "outcomes": dict(outcomes),
        "states": dict(states),
        "seconds": round(time.perf_counter() - began, 3),
    }


def tree_contents(root: str | os.PathLike) -> dict[str, bytes]:
    """`{relative path: bytes}` of every file under `root` (directories appear through their files)."""
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
