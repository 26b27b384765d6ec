"""Where a store's lease file lives and how it is changed atomically (see :mod:`.lease`).

Atomicity:

* Local disk. Create: write a temporary file and ``os.link`` it to the lease path (atomic
  create-with-content; ``O_CREAT | O_EXCL`` where hard links are unsupported). Takeover:
  ``os.rename`` the stale file to a unique name (only one of two takers succeeds), check that the
  renamed bytes are the ones judged stale (else put them back), delete them, then create. Renewal:
  read, check it is still ours, write a temporary file and ``os.replace``. Each of these holds an
  exclusive ``flock`` on ``<store>.lease.lock`` (an empty file left beside the store; the kernel
  releases the lock when its process dies, so it never goes stale). Without it, a third taker
  could create a lease while a second one puts back a fresh lease it moved aside by mistake (1 in
  200 races of 8 threads in our tests), and a renewal could overwrite a takeover. Where flock is
  unsupported (some network filesystems) the rename protocol runs alone with those windows; the
  run that lost finds out at its next heartbeat (:class:`LeaseLost`).
* S3 (s3fs). Create is ``PutObject`` with ``If-None-Match: *``; renewal is ``PutObject`` with
  ``If-Match: <ETag>``; takeover deletes with ``DeleteObject`` ``If-Match: <ETag>``. Every create
  is read back, so a server that ignores conditional headers degrades to the fallback below.
* Other fsspec filesystems, no conditional writes: create when absent, then read back; delete
  after comparing. Race window: two takers that both see the lease absent both write, and both
  may read back their own bytes; the loser finds out at its next heartbeat (:class:`LeaseLost`),
  so the two may overlap for up to ``heartbeat_s``.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from .secrets import resolved

log = logging.getLogger("pathatlas.lease")

LEASE_SUFFIX = ".lease.json"
LOCK_SUFFIX = ".lease.lock"  # local disk only: an empty file whose flock serializes lease mutations


# -- where the lease is stored --------------------------------------------------------------------


class Backend(Protocol):
    """Lease-file operations. A token is an opaque version of what was read (bytes or an ETag)."""

    display: str

    def read(self) -> tuple[bytes, object] | None: ...

    def create(self, data: bytes) -> bool:
        """Write ``data`` only if there is no lease; True if ours is the one stored."""
        ...

    def replace_if(self, data: bytes, token: object) -> bool:
        """Overwrite with ``data`` only if the lease is still the version ``token``."""
        ...

    def remove_if(self, token: object) -> bool:
        """Delete only if the lease is still the version ``token``; True if deleted."""
        ...


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def lease_path(uri: str, storage_options: dict | None = None) -> str:
    """Where the lease of the store at ``uri`` lives: ``<uri>.lease.json`` (a path or a URL)."""
    return open_backend(uri, storage_options).display


def open_backend(uri: str, storage_options: dict | None) -> Backend:
    if _is_local(uri):
        return _LocalBackend(uri.removeprefix("file://"))
    import fsspec.core  # lazy: fsspec comes with zarr (the pipeline extra), s3fs with the s3 extra

    fs, path = fsspec.core.url_to_fs(uri, **resolved(storage_options))
    path = path.rstrip("/")
    if "/" not in path.lstrip("/"):
        raise ValueError(f"the store {uri!r} is a bucket root: put it under a prefix, its lease lives beside it")
    if _is_s3(fs):
        return _S3Backend(fs, path + LEASE_SUFFIX)
    return _FsspecBackend(fs, path + LEASE_SUFFIX)


def _is_s3(fs: Any) -> bool:
    try:
        from s3fs import S3FileSystem
    except ImportError:
        return False
    return isinstance(fs, S3FileSystem)


class _LocalBackend:
    """The lease on a local (or network-mounted POSIX) filesystem."""

    def __init__(self, store: str) -> None:
        store_path = os.path.abspath(store.rstrip("/") or "/")
        if store_path == "/":
            raise ValueError("the store cannot be the filesystem root")
        self.path = Path(store_path + LEASE_SUFFIX)
        self.lock_path = Path(store_path + LOCK_SUFFIX)
        self.display = str(self.path)

    @contextmanager
    def _serialized(self) -> Iterator[None]:
        """Hold an exclusive ``flock`` on ``<store>.lease.lock`` around one mutation. The kernel drops
        it when its process dies, so it never goes stale; it closes the window in which a taker has
        moved a fresh lease aside to put it back. Where flock is unsupported, go on without it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o666)
        except PermissionError:  # created by another user: a read-only descriptor can still flock
            fd = os.open(self.lock_path, os.O_RDONLY)
        try:
            _flock(fd, self.lock_path)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _temp(self) -> Path:
        return self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")

    def _write_temp(self, data: bytes) -> Path:
        tmp = self._temp()
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def read(self) -> tuple[bytes, object] | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return data, data

    def create(self, data: bytes) -> bool:
        with self._serialized():
            tmp = self._write_temp(data)
            try:
                os.link(tmp, self.path)  # atomic: the lease appears with its whole content, or not at all
                return True
            except FileExistsError:
                return False
            except OSError as exc:  # no hard links here (some FUSE/SMB mounts): exclusive create instead
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                return self._create_exclusive(data)
            finally:
                tmp.unlink(missing_ok=True)

    def _create_exclusive(self, data: bytes) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def replace_if(self, data: bytes, token: object) -> bool:
        with self._serialized():
            current = self.read()
            if current is None or current[0] != token:
                return False
            os.replace(self._write_temp(data), self.path)  # readers see the old or the new file, whole
            return True

    def remove_if(self, token: object) -> bool:
        with self._serialized():
            aside = self._temp()
            try:
                os.rename(self.path, aside)  # of two takers, exactly one moves the file
            except FileNotFoundError:
                return False
            if aside.read_bytes() == token:
                aside.unlink()
                return True
            # it changed between our read and our rename (renewed or taken over): put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass  # a new lease appeared meanwhile (only without flock); the one we moved sees LeaseLost
            aside.unlink()
            return False


def _flock(fd: int, path: Path, timeout_s: float = 10.0) -> None:
    """Take an exclusive flock on ``fd``, waiting up to ``timeout_s`` (mutations take milliseconds)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the rename protocol alone
        return
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} stayed locked for {timeout_s:.0f} s: is a lease operation stuck?") from None
            time.sleep(0.01)
        except OSError as exc:  # ENOLCK / EOPNOTSUPP on some network filesystems
            log.debug("no flock on %s (%s): relying on the rename protocol alone", path, exc)
            return


class _FsspecBackend:
    """Any fsspec filesystem, without conditional writes (see the module docstring's race window)."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.path = path
        self.display = fs.unstrip_protocol(path)

    def read(self) -> tuple[bytes, object] | None:
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        return data, data

    def _verify(self, data: bytes) -> bool:
        current = self.read()
        return current is not None and current[0] == data

    def create(self, data: bytes) -> bool:
        if self.fs.exists(self.path):
            return False
        self.fs.makedirs(self.path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(self.path, data)
        return self._verify(data)

    def replace_if(self, data: bytes, token: object) -> bool:
        current = self.read()
        if current is None or current[1] != token:
            return False
        self.fs.pipe_file(self.path, data)
        return True

    def remove_if(self, token: object) -> bool:
        current = self.read()
        if current is None or current[1] != token:
            return False
        self.fs.rm_file(self.path)
        return True


def _s3_condition_failed(exc: OSError) -> bool:
    """Did S3 refuse a conditional request (412, or 409 for a concurrent conditional write)?"""
    response = getattr(exc.__cause__, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


class _S3Backend(_FsspecBackend):
    """S3 through s3fs, with conditional writes: ETags are the tokens."""

    def read(self) -> tuple[bytes, object] | None:
        # the ETag first, then the bytes: the bytes are never older than the ETag, so a conditional
        # write with it fails if the bytes we judged are not what is stored
        try:
            etag = self.fs.info(self.path, refresh=True)["ETag"]
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        return data, etag

    def create(self, data: bytes) -> bool:
        created = _conditionally(lambda: self.fs.pipe_file(self.path, data, mode="create"), FileExistsError)
        return created and self._verify(data)  # a server that ignored If-None-Match shows here

    def replace_if(self, data: bytes, token: object) -> bool:
        return _conditionally(lambda: self.fs.pipe_file(self.path, data, IfMatch=token), FileNotFoundError)

    def remove_if(self, token: object) -> bool:
        bucket, key, _ = self.fs.split_path(self.path)
        try:
            delete = functools.partial(self.fs.call_s3, "delete_object", Bucket=bucket, Key=key, IfMatch=token)
            return _conditionally(delete, FileNotFoundError)
        finally:
            self.fs.invalidate_cache(self.path)


def _conditionally(request: Callable[[], object], lost: type[OSError]) -> bool:
    """Send one conditional S3 request: ``False`` if its condition did not hold (S3 refused it,
    or it raised ``lost``: the object was there / was gone), ``True`` if it was carried out."""
    try:
        request()
    except lost:
        return False
    except OSError as exc:
        if not _s3_condition_failed(exc):
            raise
        return False
    return True
