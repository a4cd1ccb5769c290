"""The recordings storage, both backends through the same checks: a folder, and a real S3-compatible server
(moto in server mode on 127.0.0.1, reached over HTTP by aiobotocore — no mock of the client)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.recordings import S3Server, moto_server, s3_client
from voice_service.recordings.storage import (
    FolderStorage,
    ObjectNotFound,
    RecordingStorage,
    S3Storage,
    StorageError,
    download,
    storage_from_settings,
)
from voice_service.settings import load_settings

BUCKET = "recordings-unit"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with moto_server() as server:
        yield server


@pytest.fixture(params=["folder", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RecordingStorage]:
    if request.param == "folder":
        store: RecordingStorage = FolderStorage(tmp_path / "store")
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        async with s3_client(server) as client:
            buckets = {b["Name"] for b in (await client.list_buckets())["Buckets"]}  # type: ignore[attr-defined]
            if BUCKET not in buckets:
                await client.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        store = S3Storage(
            BUCKET,
            f"unit-{os.urandom(4).hex()}",
            endpoint_url=server.endpoint_url,
            region=server.region,
            access_key_id=server.access_key_id,
            secret_access_key=server.secret_access_key,
        )
    try:
        yield store
    finally:
        await store.aclose()


async def _read(store: RecordingStorage, key: str, start: int = 0, stop: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.get(key, start, stop)])


async def test_put_get_ranges_size_delete(storage: RecordingStorage, tmp_path: Path) -> None:
    body = os.urandom(700_000)  # several read chunks
    source = tmp_path / "source.bin"
    source.write_bytes(body)
    key = "calls/tenant/call.mp3"
    assert await storage.put(key, source, content_type="audio/mpeg") == len(body)
    assert await storage.size(key) == len(body)
    assert await _read(storage, key) == body
    assert await _read(storage, key, 10, 20) == body[10:20]
    assert await _read(storage, key, 699_990) == body[699_990:]
    assert await _read(storage, key, 300_000, 600_001) == body[300_000:600_001]
    # A second put replaces the object.
    source.write_bytes(b"short")
    await storage.put(key, source, content_type="audio/mpeg")
    assert await _read(storage, key) == b"short"
    target = tmp_path / "copy.bin"
    assert await download(storage, key, target) == 5 and target.read_bytes() == b"short"
    await storage.delete(key)
    await storage.delete(key)  # deleting what is not there is no error
    with pytest.raises(ObjectNotFound):
        await storage.size(key)
    with pytest.raises(ObjectNotFound):
        await _read(storage, key)


async def test_keys_cannot_leave_the_store(storage: RecordingStorage, tmp_path: Path) -> None:
    source = tmp_path / "x"
    source.write_bytes(b"x")
    for key in ("../outside", "/etc/passwd", "a//b", "a/./b", ""):
        with pytest.raises(ValueError, match="invalid storage key"):
            await storage.put(key, source, content_type="application/octet-stream")


async def test_an_unreachable_store_is_a_storage_error(tmp_path: Path) -> None:
    source = tmp_path / "x"
    source.write_bytes(b"x")
    # Nothing listens on port 9 of the loopback: the connection is refused at once.
    store = S3Storage("b", endpoint_url="http://127.0.0.1:9", access_key_id="a", secret_access_key="b")
    try:
        with pytest.raises(StorageError) as caught:
            await store.put("k", source, content_type="application/octet-stream")
        assert not isinstance(caught.value, ObjectNotFound)
    finally:
        await store.aclose()


def test_recordings_url_chooses_the_backend(tmp_path: Path) -> None:
    default = storage_from_settings(load_settings(env={}, data_dir=str(tmp_path)))
    assert isinstance(default, FolderStorage) and default.root == tmp_path.resolve() / "recordings"
    folder = storage_from_settings(load_settings(env={"RECORDINGS_URL": f"file://{tmp_path}/rec"}))
    assert isinstance(folder, FolderStorage) and folder.root == tmp_path.resolve() / "rec"
    s3 = storage_from_settings(
        load_settings(env={"RECORDINGS_URL": "s3://bucket/some/prefix", "S3_ENDPOINT_URL": "http://127.0.0.1:1"})
    )
    assert isinstance(s3, S3Storage) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    with pytest.raises(ValueError, match="RECORDINGS_URL"):
        storage_from_settings(load_settings(env={"RECORDINGS_URL": "ftp://host/x"}))
    with pytest.raises(ValueError, match="no bucket"):
        storage_from_settings(load_settings(env={"RECORDINGS_URL": "s3:///prefix"}))


async def test_large_objects_go_up_in_parts(s3_server: S3Server, tmp_path: Path) -> None:
    async with s3_client(s3_server) as client:
        buckets = {b["Name"] for b in (await client.list_buckets())["Buckets"]}  # type: ignore[attr-defined]
        if BUCKET not in buckets:
            await client.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    store = S3Storage(
        BUCKET,
        "multipart",
        endpoint_url=s3_server.endpoint_url,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
        multipart_threshold=6 * 1024 * 1024,
        part_size=5 * 1024 * 1024,
    )
    body = os.urandom(11 * 1024 * 1024)  # three parts: 5 + 5 + 1 MiB
    source = tmp_path / "big.bin"
    source.write_bytes(body)
    try:
        assert await store.put("big", source, content_type="application/octet-stream") == len(body)
        assert await store.size("big") == len(body)
        assert await _read(store, "big", 5 * 1024 * 1024 - 3, 5 * 1024 * 1024 + 3) == body[5242877:5242883]
        assert await _read(store, "big") == body
    finally:
        await store.delete("big")
        await store.aclose()
