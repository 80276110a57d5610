"""The lock a process holds on a folder it writes (a run folder for train.py, a figures folder
for predict.py), so that two processes never write into one."""
from __future__ import annotations

import json
import os
import pathlib
import socket
import sys

from brainvq.hints import PathLike
from brainvq.runs.run_folder import LOCK_FILE, RunError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock on a run folder, held by one train.py process.

    `acquire` creates `.lock` (pid, host, command) with O_EXCL; a lock whose process is gone
    (on this host) is taken over with a note. Use as a context manager.
    """

    def __init__(self, folder: PathLike, flag: str = "--output-dir") -> None:
        self.folder = pathlib.Path(folder)
        self.path = self.folder / LOCK_FILE
        self.flag = flag  # the option that names the folder, for the message
        self.held = False

    def _owner(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def acquire(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "command": " ".join(sys.argv)}
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self._owner()
                pid, host = owner.get("pid"), owner.get("host")
                if isinstance(pid, int) and host == socket.gethostname() and not _alive(pid):
                    print(f"note: removing the stale lock of process {pid}, which has ended "
                          f"({self.path})", file=sys.stderr)
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunError(
                    f"{self.folder} is in use by process {pid} on {host} "
                    f"({owner.get('command', 'unknown command')}): wait for it to finish, or use "
                    f"another {self.flag}. If that process is gone, delete {self.path}.") from None
            with os.fdopen(descriptor, "w") as handle:
                json.dump(record, handle)
            self.held = True
            return self
        raise RunError(f"could not take the lock {self.path}")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> bool:
        self.release()
        return False
