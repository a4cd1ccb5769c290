"""Encryption at rest for secrets the service must read back (webhook signing secrets): AES-256-GCM.

Stored form: ``v1:`` + base64(12-byte nonce + ciphertext + tag). The associated data binds a ciphertext to its
row, so a value copied into another row does not decrypt. The key is SECRETS_ENCRYPTION_KEY (base64 of 32 bytes);
without it a development key is derived from a random key file created once under DATA_DIR (mode 0600), and a
warning is logged once per process: such a key is only as safe as that file and is lost with it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import secrets
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from voice_service.settings import Settings

log = logging.getLogger(__name__)

VERSION = "v1"
KEY_FILE = "secrets.key"
_NONCE_BYTES = 12
_cache: dict[tuple[str | None, str], SecretBox] = {}
_lock = threading.Lock()
_warned = False


class SecretBoxError(ValueError):
    """A stored secret cannot be decrypted (wrong key, tampered or unknown format)."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the secrets encryption key must be 32 bytes")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return f"{VERSION}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, stored: str, context: str) -> str:
        version, _, payload = stored.partition(":")
        if version != VERSION or not payload:
            raise SecretBoxError(f"unknown stored secret format {version!r}")
        try:
            raw = base64.b64decode(payload, validate=True)
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode()).decode()
        except (binascii.Error, InvalidTag, ValueError) as exc:
            raise SecretBoxError("stored secret does not decrypt with the configured key") from exc


def _configured_key(value: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError("SECRETS_ENCRYPTION_KEY is not valid base64") from exc
    if len(key) != 32:
        raise ValueError(f"SECRETS_ENCRYPTION_KEY must decode to 32 bytes (got {len(key)})")
    return key


def _development_key(data_dir: Path) -> bytes:
    global _warned
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # made by an earlier run or a concurrent process
    else:
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(secrets.token_bytes(32)).decode("ascii") + "\n")
    seed = base64.b64decode(path.read_text().strip(), validate=True)
    if not _warned:
        _warned = True
        log.warning(
            "SECRETS_ENCRYPTION_KEY is not set: secrets are encrypted with a development key from %s; "
            "set SECRETS_ENCRYPTION_KEY in production",
            path,
        )
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"voice-service secrets v1")
    return hkdf.derive(seed)


def box_for_sync(settings: Settings) -> SecretBox:
    """The SecretBox for these settings (blocking on first use: may create and read the key file)."""
    cache_key = (settings.secrets_encryption_key, str(settings.resolved_data_dir))
    with _lock:
        box = _cache.get(cache_key)
        if box is None:
            if settings.secrets_encryption_key:
                key = _configured_key(settings.secrets_encryption_key)
            else:
                key = _development_key(settings.resolved_data_dir)
            box = _cache[cache_key] = SecretBox(key)
    return box


async def box_for(settings: Settings) -> SecretBox:
    cache_key = (settings.secrets_encryption_key, str(settings.resolved_data_dir))
    box = _cache.get(cache_key)
    if box is not None:
        return box
    return await asyncio.to_thread(box_for_sync, settings)
