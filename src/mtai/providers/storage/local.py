"""Objects as files under one directory: for a single machine and for development."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import anyio.to_thread

from mtai.providers.storage.base import (
    ObjectMissing,
    StorageUnavailable,
    validate_key,
    validate_prefix,
)

_DIR_MODE = 0o700
_MAX_NAME_BYTES = 255  # NAME_MAX of common Linux file systems
_CHECK_PREFIX = "_mtai-check/"


class LocalObjectStore:
    """Each key is a file path relative to `root`; blocking I/O runs in worker threads."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        # validate_key refuses absolute keys and '..' segments, so the path stays under root.
        segments = validate_key(key).split("/")
        if any(len(s.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES for s in segments):
            raise ValueError(f"object key {key!r} has a segment longer than a file name may be")
        return self.root.joinpath(*segments)

    def _unusable(self, exc: OSError) -> StorageUnavailable:
        if isinstance(exc, FileExistsError | NotADirectoryError):
            reason = "part of its path is a file, not a directory"
        else:
            reason = exc.strerror or type(exc).__name__
        return StorageUnavailable(
            f"local object store at {self.root} is not usable ({reason}): "
            "make it a directory this process can write, or set MTAI_STORAGE_DIR to one"
        )

    @staticmethod
    def _make_dirs(directory: Path) -> None:
        """Create `directory` and its missing parents, each with mode 0700.

        os.makedirs applies `mode` to the last directory only, so each level is made here.
        """
        missing: list[Path] = []
        current = directory
        while not current.is_dir() and current.parent != current:
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            try:
                path.mkdir(mode=_DIR_MODE)
            except FileExistsError:
                if not path.is_dir():  # a regular file where a directory must be
                    raise
                continue  # made concurrently by another writer
            path.chmod(_DIR_MODE)  # the umask may have cleared bits of the mode asked for

    def _write(self, path: Path, data: bytes) -> None:
        self._make_dirs(self.root)  # failures here are the store's, reported as unusable
        try:
            self._make_dirs(path.parent)
        except (FileExistsError, NotADirectoryError) as exc:
            raise ValueError("object key runs through another object's file") from exc
        # mkstemp creates the file 0600; a temp file in the same directory makes os.replace
        # an atomic rename, so a reader sees the old object or the new one, never a torn one.
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp_name, path)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            if isinstance(exc, IsADirectoryError):
                raise ValueError("object key names a directory of other objects") from exc
            raise
        # The rename is durable only once the directory entry itself is on disk.
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        # content_type is not kept: whoever reads an original knows its type from the database.
        path = self._path(key)
        try:
            await anyio.to_thread.run_sync(self._write, path, bytes(data))
        except OSError as exc:
            raise self._unusable(exc) from exc

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await anyio.to_thread.run_sync(path.read_bytes)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectMissing(key) from exc
        except OSError as exc:
            raise self._unusable(exc) from exc

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            await anyio.to_thread.run_sync(path.unlink)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return  # no object under that key: deleting is idempotent
        except OSError as exc:
            raise self._unusable(exc) from exc

    @staticmethod
    def _remove_tree(directory: Path) -> int:
        if not directory.is_dir():
            return 0
        count = sum(len(files) for _, _, files in os.walk(directory))
        shutil.rmtree(directory)
        return count

    async def delete_prefix(self, prefix: str) -> int:
        directory = self.root.joinpath(*validate_prefix(prefix)[:-1].split("/"))
        try:
            return await anyio.to_thread.run_sync(self._remove_tree, directory)
        except OSError as exc:
            raise self._unusable(exc) from exc

    async def check(self) -> None:
        key = f"{_CHECK_PREFIX}{uuid.uuid4().hex}"
        probe = os.urandom(32)
        await self.put(key, probe, content_type="application/octet-stream")
        try:
            read_back = await self.get(key)
        except ObjectMissing as exc:
            raise StorageUnavailable(
                f"local object store at {self.root} lost a file it had just written: "
                "check that nothing else removes files from that directory"
            ) from exc
        await self.delete(key)
        if read_back != probe:
            raise StorageUnavailable(
                f"local object store at {self.root} read back other bytes than it wrote: "
                "check the disk and its file system"
            )

    async def aclose(self) -> None:
        return None
