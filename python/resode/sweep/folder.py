"""The sweep folder: ``OUT/sweep.json`` (the spec and its hash) is written before anything
else, and a folder that is neither new, empty, nor the sweep folder of the same spec is refused.
One driver at a time works on a folder (``OUT/sweep.lock`` holds its host and pid; the lock of a
dead driver on this host is taken over). A run's files are written by the driver into its
private scratch folder ``OUT/.resode-tmp/<driver>/`` and renamed into ``OUT/runs/<id>/``, so
a run either has a complete ``result.json`` or no folder at all."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["FINISHED", "claimed", "process_started", "read_result", "replace", "sigint_ignored",
           "store"]  # fmt: skip

FINISHED = ("ok", "diverged")
#: The files of a sweep folder.
_MARKER, _LOCK, _SCRATCH = "sweep.json", "sweep.lock", ".resode-tmp"


def _result_path(out: Path, run_id: str) -> Path:
    return out / "runs" / run_id / "result.json"


def read_result(out: Path, run_id: str) -> dict[str, Any] | None:
    """A run's ``result.json``, None when it has none (or an unreadable one)."""
    try:
        result: dict[str, Any] = json.loads(_result_path(out, run_id).read_text(encoding="utf-8"))
        return result
    except (OSError, ValueError):
        return None


def store(out: Path, scratch: Path, run_id: str, files: Mapping[str, bytes]) -> None:
    """Write a run's files (``result.json`` among them) into ``OUT/runs/<id>/``: first into
    the scratch folder, ``result.json`` last, then renamed into place (an unfinished or failed
    earlier attempt is replaced; a finished one is kept)."""
    tmp = scratch / f"{run_id}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # not parents=True: the scratch folder is this driver's
    try:
        for name, data in files.items():
            if name != "result.json" and "/" not in name and name not in ("", ".", ".."):
                (tmp / name).write_bytes(data)
        (tmp / "result.json").write_bytes(files["result.json"])
        final = out / "runs" / run_id
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            previous = read_result(out, run_id)
            if previous is not None and previous.get("status") in FINISHED:
                return
            shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` atomically: ``write`` fills a temporary file beside it, which replaces
    ``path``; the temporary file is removed if anything fails (Ctrl-C included)."""
    tmp = path.with_name(f".{path.stem}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _spec_hash(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(_spec_text(spec).encode()).hexdigest()


def _spec_text(spec: Mapping[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, default=str)


def _create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text``, complete or not at all, unless it exists (False).

    The text goes to a temporary file that is hard-linked to ``path``: the link fails if
    ``path`` exists, so of two processes creating it at once exactly one succeeds, and a
    reader never sees a partial file. (File systems without hard links: an exclusive open.)
    """
    tmp = path.with_name(f".resode-new-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text, encoding="utf-8")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            try:
                with path.open("x", encoding="utf-8") as f:
                    f.write(text)
            except FileExistsError:
                return False
        return True
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _mark(out: Path, spec: Mapping[str, Any]) -> None:
    """Make ``out`` the sweep folder of ``spec`` (its ``sweep.json`` first of all), or check
    that it is one; refuse any other folder, touching nothing in it."""
    marker = out / _MARKER
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} is a file, not a folder")
    if not marker.exists():
        if out.is_dir() and any(not p.name.startswith(".resode-new-") for p in out.iterdir()):
            raise ValueError(
                f"out {out} is not empty and is not a resode sweep folder (no {_MARKER}): give a "
                "new or empty folder"
            )
        out.mkdir(parents=True, exist_ok=True)
        from .. import __version__

        record = {"resode": __version__, "spec_sha256": _spec_hash(spec),
                  "spec": json.loads(_spec_text(spec))}  # fmt: skip
        _create_exclusive(marker, json.dumps(record, indent=2) + "\n")  # False: a twin did
    recorded = _read_json(marker)
    if recorded is None or "spec_sha256" not in recorded:
        raise ValueError(f"out {out}: {marker} is not a resode sweep marker")
    if recorded["spec_sha256"] != _spec_hash(spec):
        raise ValueError(
            f"out {out} is the sweep folder of another spec (see its {_MARKER}): give another "
            "folder for this spec"
        )


def process_started(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), None if unknown: with the pid,
    it tells a live driver from a new process that reuses a dead driver's pid."""
    try:
        import psutil  # a dependency of distributed

        return float(psutil.Process(pid).create_time())
    except Exception:
        return None


def _alive(pid: int, started: Any) -> bool:
    """Whether the process ``pid`` that started at ``started`` runs (on this host)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - distributed requires psutil
        if os.name == "nt":
            return True  # unknown: keep the lock
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    if not psutil.pid_exists(pid):
        return False
    now = process_started(pid)
    return now is None or not isinstance(started, (int, float)) or abs(now - started) < 1.0


def _lock(out: Path, driver: str) -> None:
    """Take ``OUT/sweep.lock`` for this driver; refuse while another live driver holds it, and
    take over the lock of a dead driver on this host (removing its scratch folder)."""
    lock = out / _LOCK
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "started": process_started(os.getpid()), "driver": driver}  # fmt: skip
    for _ in range(3):
        if _create_exclusive(lock, json.dumps(me) + "\n"):
            return
        holder = _read_json(lock)
        if holder is None:  # removed since, or not a lock resode wrote
            if lock.exists():
                raise ValueError(f"out {out}: {lock} is not a lock resode can read; remove it")
            continue
        same_host = holder.get("host") == me["host"] and isinstance(holder.get("pid"), int)
        if not same_host or _alive(holder["pid"], holder.get("started")):
            raise ValueError(
                f"out {out} is in use by another resode sweep (host {holder.get('host')}, pid "
                f"{holder.get('pid')}; {_LOCK}): wait for it to end, or remove {lock} if that "
                "process is gone"
            )
        _take_over(lock, holder, out)
    raise ValueError(f"out {out}: could not take {lock}; another driver is starting")


def _take_over(lock: Path, holder: Mapping[str, Any], out: Path) -> None:
    """Remove the stale lock ``holder``: renamed aside first, so that of two drivers taking it
    over at once one removes it; a live lock renamed by mistake is put back."""
    aside = lock.with_name(f".resode-stale-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(lock, aside)
    except FileNotFoundError:  # the other driver took it over first
        return
    if _read_json(aside) == dict(holder):
        aside.unlink()
        driver = str(holder.get("driver", ""))
        if driver.isalnum():  # a name resode gave, not a path
            shutil.rmtree(out / _SCRATCH / driver, ignore_errors=True)  # the dead one's
    else:  # a new driver's lock: back in place unless yet another one exists
        with contextlib.suppress(OSError):
            os.link(aside, lock)
        with contextlib.suppress(OSError):
            aside.unlink()


def _unlock(out: Path, driver: str) -> None:
    lock = out / _LOCK
    holder = _read_json(lock)
    if holder is not None and holder.get("driver") == driver:
        with contextlib.suppress(OSError):
            lock.unlink()


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ctrl-C ignored for a while (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def claimed(out: Path, spec: Mapping[str, Any]) -> Iterator[Path]:
    """``out`` as the locked sweep folder of ``spec``; yields this driver's scratch folder,
    removed at the end with the lock (a Ctrl-C then does not cut that short)."""
    driver = uuid.uuid4().hex[:12]
    scratch = out / _SCRATCH / driver
    try:
        _mark(out, spec)
        _lock(out, driver)
    except OSError as exc:  # cannot create or read the folder
        raise ValueError(f"out {out}: {exc.strerror or exc}") from None
    try:
        scratch.mkdir(parents=True)
        (out / "runs").mkdir(exist_ok=True)
        yield scratch
    finally:
        with sigint_ignored():
            shutil.rmtree(scratch, ignore_errors=True)
            with contextlib.suppress(OSError):  # only when no other scratch folder is left
                (out / _SCRATCH).rmdir()
            _unlock(out, driver)
