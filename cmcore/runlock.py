"""One run, one writer: the run folder's lock, and the control file through which a front end pauses or stops
a run that another process trains.

    RUN/.lock           while a process trains the run: its pid, host and start time
    RUN/control.json    {"pause": bool, "stop": bool}: a front end's request to the process training the run

Free of torch, like cmcore.rundir: the app asks who trains a run before torch is imported.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path

from .errors import RunBusyError
from .rundir import CONTROL, LOCK, _is_number, atomic_write_bytes


# --- one run, one writer ----------------------------------------------------------------------------------
_UNWRITTEN_LOCK_GRACE_S = 2.0  # a lock file still empty this long after its creation was left by a crash


def lock_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / LOCK


def lock_owner(run_dir: str | Path) -> dict | None:
    """Who trains the run now: the lock's record ({"pid", "host", "started" (epoch seconds), ...}) while its
    process lives, this one included; None when nobody does (no lock, or a lock left by a process that died
    on this host). A process on another host is taken to be alive: it cannot be asked."""
    owner, _ = _lock_state(lock_path(run_dir))
    return owner


def acquire_lock(run_dir: str | Path) -> dict:
    """Take the run's lock for this process, or raise RunBusyError naming the process that holds it. The
    lock file is created atomically (O_CREAT | O_EXCL); one left by a dead process on this host is taken
    over. Returns the record to hand to `release_lock`."""
    path = lock_path(run_dir)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": round(time.time(), 3),
              "token": secrets.token_hex(8)}
    start = _process_start(os.getpid())
    if start is not None:
        record["pid_start"] = start  # tells this process from a later one given the same pid
    deadline = time.monotonic() + 2 * _UNWRITTEN_LOCK_GRACE_S
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner, raw = _lock_state(path)
            if owner is not None:
                if owner.get("pid") is None and time.monotonic() < deadline:  # being written this instant
                    time.sleep(0.05)
                    continue
                raise RunBusyError(_busy_message(run_dir, owner)) from None
            _remove_if_unchanged(path, raw)  # stale: its process is gone
            if time.monotonic() > deadline:
                raise RunBusyError(f"cannot take the lock {path}: it keeps changing; is another program "
                                   "starting this run?") from None
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(record))
            fh.flush()
            os.fsync(fh.fileno())
        return record


def release_lock(run_dir: str | Path, record: dict) -> None:
    """Remove the run's lock if it is still the one `record` describes (never another process's)."""
    path = lock_path(run_dir)
    try:
        raw = path.read_bytes()
        if json.loads(raw).get("token") == record.get("token"):
            _remove_if_unchanged(path, raw)
    except (OSError, ValueError, AttributeError):
        pass


def _busy_message(run_dir: str | Path, owner: dict) -> str:
    if owner.get("pid") is None:
        return f"{run_dir} is being started by another process: wait a moment and try again"
    started = owner.get("started")
    since = time.strftime(" since %Y-%m-%d %H:%M", time.localtime(started)) if _is_number(started) else ""
    text = f"this run ({run_dir}) is being trained by pid {owner['pid']} on {owner.get('host', '?')}{since}"
    if owner.get("host") != socket.gethostname():
        return f"{text}: stop it there first (if that process is gone, delete {lock_path(run_dir)})"
    return f"{text}: stop that process first, or train into another folder"


def _lock_state(path: Path) -> tuple[dict | None, bytes | None]:
    """(the live owner's record or None, the lock file's bytes or None when there is no lock file).
    A lock file that is empty or unreadable and young counts as owned by a process writing it ({"pid": None})."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError:
        return {"pid": None}, b""  # cannot read it: better busy than two writers
    try:
        owner = json.loads(raw)
        pid = owner["pid"]
        if not isinstance(owner, dict) or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValueError("not a lock record")
    except (ValueError, KeyError, TypeError):
        try:
            young = time.time() - path.stat().st_mtime < _UNWRITTEN_LOCK_GRACE_S
        except OSError:
            young = False
        return ({"pid": None} if young else None), raw
    if owner.get("host") != socket.gethostname():
        return owner, raw
    return (owner if _alive(pid, owner.get("pid_start")) else None), raw


def _remove_if_unchanged(path: Path, raw: bytes | None) -> None:
    try:
        if path.read_bytes() == raw:
            path.unlink()
    except OSError:
        pass


def _alive(pid: int, pid_start=None) -> bool:
    """Whether process `pid` of this host runs (and is the one that started at `pid_start`, where known)."""
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        return _alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except OSError:
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        if stat[0] == "Z":  # exited, not yet reaped
            return False
        if pid_start is not None and stat[19] != str(pid_start):  # the pid was reused
            return False
    return True


def _proc_stat(pid: int) -> list[str] | None:
    """The fields after the command name in /proc/PID/stat (Linux), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    fields = text[text.rfind(")") + 1:].split()
    return fields if len(fields) > 19 else None


def _process_start(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return int(stat[19]) if stat is not None and stat[19].isdigit() else None


def _alive_windows(pid: int) -> bool:  # pragma: no cover - Windows only
    import ctypes

    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return kernel32.GetLastError() == 5  # ERROR_ACCESS_DENIED: it exists
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


# --- the control file: Pause and Stop for a run trained by another process ---------------------------------
def write_control(run_dir: str | Path, *, pause: bool = False, stop: bool = False) -> None:
    """Ask the process training the run (rank 0 of a torchrun run, or a lone `cmcore train`) to pause, go on or
    stop (it saves a checkpoint first); it reads the file every half second or so. Written atomically."""
    atomic_write_bytes(Path(run_dir) / CONTROL, json.dumps({"pause": bool(pause), "stop": bool(stop)}).encode())


def read_control(run_dir: str | Path) -> dict | None:
    """{"pause": bool, "stop": bool} as a front end last wrote it; None when there is no (readable) request."""
    try:
        record = json.loads((Path(run_dir) / CONTROL).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    return {"pause": record.get("pause") is True, "stop": record.get("stop") is True}


def clear_control(run_dir: str | Path) -> None:
    """Forget earlier requests (a run starting or resuming begins neither paused nor stopped)."""
    try:
        (Path(run_dir) / CONTROL).unlink()
    except OSError:
        pass
