"""Where recordings (and the raw spools waiting to be encoded) are kept: one small interface, two backends.

`RECORDINGS_URL` chooses the backend:

* unset, a path, or `file:///path`: a folder (default `DATA_DIR/recordings`). Right for one instance, or for
  several that mount the same folder.
* `s3://bucket/prefix`: any S3-compatible store (AWS S3, MinIO, Ceph, R2, …) through aiobotocore, with
  `S3_ENDPOINT_URL` (unset: AWS), `S3_REGION`, and `S3_ACCESS_KEY_ID` / `S3_SECRET_ACCESS_KEY` (unset: the
  AWS default credential chain). With an endpoint URL, path-style addressing is used: most self-hosted stores
  serve no per-bucket host names.

Operations: `put` (a local file, atomically: a reader never sees half an object), `get` (a byte range, as an
async stream of chunks), `size`, `delete` (idempotent). A missing object raises `ObjectNotFound`; anything else
that goes wrong raises `StorageError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from voice_service.runtime import Runtime
from voice_service.settings import Settings

__all__ = [
    "FolderStorage",
    "ObjectNotFound",
    "RecordingStorage",
    "S3Storage",
    "StorageError",
    "download",
    "get_storage",
    "storage_from_settings",
]

CHUNK = 256 * 1024
_MULTIPART_THRESHOLD = 64 * 1024 * 1024
_PART_SIZE = 16 * 1024 * 1024  # S3 parts are at least 5 MiB (all but the last)


class StorageError(Exception):
    """The store failed or could not be reached."""


class ObjectNotFound(StorageError):
    """No object under that key."""


class RecordingStorage(Protocol):
    name: str

    async def put(self, key: str, source: Path, *, content_type: str) -> int:
        """Store the file `source` under `key` (replacing any object there); returns its size."""
        ...

    def get(self, key: str, start: int = 0, stop: int | None = None) -> AsyncIterator[bytes]:
        """Bytes [start, stop) of the object (stop None: to the end), in chunks."""
        ...

    async def size(self, key: str) -> int: ...

    async def delete(self, key: str) -> None:
        """Remove the object; no error when there is none."""
        ...

    async def aclose(self) -> None: ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class FolderStorage:
    """Objects are files under `root` (keys are relative paths with `/` separators)."""

    name = "folder"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_check_key(key).split("/"))

    async def put(self, key: str, source: Path, *, content_type: str) -> int:
        target = self._path(key)

        def copy() -> int:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
            try:
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            return target.stat().st_size

        try:
            return await asyncio.to_thread(copy)
        except OSError as exc:
            raise StorageError(f"writing {key} failed: {exc}") from exc

    async def get(self, key: str, start: int = 0, stop: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageError(f"reading {key} failed: {exc}") from exc
        try:
            await asyncio.to_thread(handle.seek, start)
            left = None if stop is None else max(0, stop - start)
            while left is None or left > 0:
                want = CHUNK if left is None else min(CHUNK, left)
                chunk = await asyncio.to_thread(handle.read, want)
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk
        except OSError as exc:
            raise StorageError(f"reading {key} failed: {exc}") from exc
        finally:
            # Closed at once, without awaiting: a player that seeks abandons the stream mid-way, and an abandoned
            # generator may be finalised where it can no longer await (a read-only file closes without I/O).
            handle.close()

    async def size(self, key: str) -> int:
        path = self._path(key)
        try:
            return (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageError(f"reading {key} failed: {exc}") from exc

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except OSError as exc:
            raise StorageError(f"deleting {key} failed: {exc}") from exc

    async def aclose(self) -> None:
        return None


class S3Storage:
    """Objects in `bucket` under `prefix`, through one aiobotocore client (opened on first use)."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        multipart_threshold: int = _MULTIPART_THRESHOLD,
        part_size: int = _PART_SIZE,
    ) -> None:
        self.bucket = bucket
        self.multipart_threshold = multipart_threshold
        self.part_size = max(part_size, 5 * 1024 * 1024)
        self.prefix = prefix.strip("/")
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region or "us-east-1",
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
        }
        self._client: Any = None
        self._client_cm: Any = None
        self._lock = asyncio.Lock()

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def client(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                from aiobotocore.config import AioConfig
                from aiobotocore.session import get_session

                style = "path" if self._client_args["endpoint_url"] else "auto"
                config = AioConfig(
                    s3={"addressing_style": style},
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=30,
                )
                cm = get_session().create_client("s3", config=config, **self._client_args)
                self._client = await cm.__aenter__()
                self._client_cm = cm
        return self._client

    @staticmethod
    def _translate(exc: Exception, key: str, action: str) -> StorageError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "NotFound", "404") or status == 404:
                return ObjectNotFound(key)
            return StorageError(f"{action} {key} failed: {code or status}")
        return StorageError(f"{action} {key} failed: {type(exc).__name__}: {exc}")

    async def put(self, key: str, source: Path, *, content_type: str) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        client = await self.client()
        full = self._key(key)
        try:
            size = (await asyncio.to_thread(source.stat)).st_size
            if size <= self.multipart_threshold:
                body = await asyncio.to_thread(source.read_bytes)
                await client.put_object(Bucket=self.bucket, Key=full, Body=body, ContentType=content_type)
                return size
            await self._put_multipart(client, full, source, content_type)
            return size
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._translate(exc, key, "writing") from exc

    async def _put_multipart(self, client: Any, full: str, source: Path, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        upload = await client.create_multipart_upload(Bucket=self.bucket, Key=full, ContentType=content_type)
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []
        try:
            handle = await asyncio.to_thread(source.open, "rb")
            try:
                number = 1
                while data := await asyncio.to_thread(handle.read, self.part_size):
                    part = await client.upload_part(
                        Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=data
                    )
                    parts.append({"PartNumber": number, "ETag": part["ETag"]})
                    number += 1
            finally:
                await asyncio.to_thread(handle.close)
            await client.complete_multipart_upload(
                Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError):
                await client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise

    async def get(self, key: str, start: int = 0, stop: int | None = None) -> AsyncIterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        if stop is not None and stop <= start:
            return
        client = await self.client()
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if start or stop is not None:
            args["Range"] = f"bytes={start}-{'' if stop is None else stop - 1}"
        try:
            response = await client.get_object(**args)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._translate(exc, key, "reading") from exc
        try:
            async with response["Body"] as body:
                async for chunk in body.iter_chunks(CHUNK):
                    yield chunk
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._translate(exc, key, "reading") from exc

    async def size(self, key: str) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        client = await self.client()
        try:
            head = await client.head_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._translate(exc, key, "reading") from exc
        return int(head["ContentLength"])

    async def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        client = await self.client()
        try:
            await client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError, OSError) as exc:
            error = self._translate(exc, key, "deleting")
            if not isinstance(error, ObjectNotFound):
                raise error from exc

    async def aclose(self) -> None:
        cm, self._client_cm, self._client = self._client_cm, None, None
        if cm is not None:
            await cm.__aexit__(None, None, None)


def storage_from_settings(settings: Settings) -> RecordingStorage:
    """The backend `RECORDINGS_URL` names (see the module docstring); a ValueError names a bad URL."""
    url = (settings.recordings_url or "").strip()
    if not url:
        return FolderStorage(settings.resolved_data_dir / "recordings")
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"RECORDINGS_URL {url!r} names no bucket (s3://bucket/prefix)")
        return S3Storage(
            parts.netloc,
            unquote(parts.path),
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region or None,
            access_key_id=settings.s3_access_key_id or None,
            secret_access_key=settings.s3_secret_access_key or None,
        )
    if parts.scheme == "file":
        return FolderStorage(Path(unquote(parts.path)).expanduser().resolve())
    if parts.scheme == "" or (len(parts.scheme) == 1 and os.name == "nt"):
        return FolderStorage(Path(url).expanduser().resolve())
    raise ValueError(f"RECORDINGS_URL {url!r}: use a folder path, file:///path or s3://bucket/prefix")


async def get_storage(runtime: Runtime) -> RecordingStorage:
    """The process's recordings storage (built on first use, closed with the Runtime)."""
    storage = runtime.recording_storage
    if storage is not None:
        return storage
    async with runtime.recording_storage_lock:
        storage = runtime.recording_storage
        if storage is None:
            storage = storage_from_settings(runtime.settings)
            runtime.exit_stack.push_async_callback(storage.aclose)
            runtime.recording_storage = storage
    return storage


async def download(storage: RecordingStorage, key: str, target: Path) -> int:
    """Copy the object into the local file `target`; returns its size."""
    written = 0
    handle = await asyncio.to_thread(target.open, "wb")
    try:
        async for chunk in storage.get(key):
            await asyncio.to_thread(handle.write, chunk)
            written += len(chunk)
    finally:
        await asyncio.to_thread(handle.close)
    return written
