"""Encryption of sensitive values at rest (AES-256-GCM) and the key that protects them.

A value is stored as ``enc:v1:`` followed by the URL-safe base64 of a random 12-byte nonce and
the AES-GCM ciphertext (which ends with the 16-byte tag). The key is 32 bytes: it comes from
``SLUICE_SECRET_KEY`` (64 hex characters, or URL-safe base64 of 32 bytes) or, when that is
unset, from ``<data dir>/secret.key``, created once with mode 0600.

Error messages never contain a plaintext or a key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sluice.errors import ConfigError

__all__ = ["ENV_VAR", "KEY_FILE_NAME", "PREFIX", "SecretBox", "load_or_create_key"]

PREFIX = "enc:v1:"
ENV_VAR = "SLUICE_SECRET_KEY"
KEY_FILE_NAME = "secret.key"

_KEY_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16
# Binds every ciphertext to the format version: a token cannot be replayed under another one.
_AAD = PREFIX.encode("ascii")
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_B64_ALPHABET = re.compile(r"[A-Za-z0-9_-]+={0,2}")


class SecretBox:
    """Encrypts and decrypts strings with one 32-byte key (AES-256-GCM, random 12-byte nonce)."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != _KEY_SIZE:
            raise ConfigError(f"the secret key must be exactly {_KEY_SIZE} bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    @staticmethod
    def is_encrypted(value: object) -> bool:
        """Whether ``value`` looks like a token made by :meth:`encrypt` (it is not decrypted)."""
        return isinstance(value, str) and value.startswith(PREFIX)

    def encrypt(self, plaintext: str) -> str:
        """``"enc:v1:" + urlsafe_b64(nonce + ciphertext)``; a fresh random nonce every call."""
        nonce = secrets.token_bytes(_NONCE_SIZE)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), _AAD)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The plaintext of ``token``; :class:`ConfigError` if the key is wrong or it is corrupt."""
        if not self.is_encrypted(token):
            raise ConfigError(f"cannot decrypt a stored secret: it does not start with {PREFIX!r}")
        blob = _b64decode(token[len(PREFIX) :])
        if blob is None or len(blob) < _NONCE_SIZE + _TAG_SIZE:
            raise ConfigError("cannot decrypt a stored secret: the encrypted value is corrupt")
        try:
            data = self._aead.decrypt(blob[:_NONCE_SIZE], blob[_NONCE_SIZE:], _AAD)
            return data.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            raise ConfigError(
                "cannot decrypt a stored secret: the secret key is not the one it was encrypted with "
                f"(check {ENV_VAR} or the {KEY_FILE_NAME} file), or the encrypted value is corrupt"
            ) from None


def load_or_create_key(data_dir: Path, env_value: str | None) -> bytes:
    """The 32-byte key: from ``env_value`` (``SLUICE_SECRET_KEY``) if given, else the key file.

    ``env_value`` may be 64 hex characters or the URL-safe base64 of 32 bytes (padding
    optional); ``None`` or a blank string means unset. Without it the key is read from
    ``data_dir / "secret.key"``, which is created once (``data_dir`` too, if missing) with 32
    random bytes as hex, mode 0600. Several processes starting at once agree on one key.
    """
    if env_value is not None and env_value.strip():
        return _parse_env_key(env_value.strip())
    path = Path(data_dir) / KEY_FILE_NAME
    if not path.exists():
        _create_key_file(path)
    return _read_key_file(path)


def _b64decode(text: str) -> bytes | None:
    """Strict URL-safe base64 (padding optional); ``None`` if ``text`` is not that."""
    if not _B64_ALPHABET.fullmatch(text):
        return None
    text = text.rstrip("=")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _parse_env_key(value: str) -> bytes:
    if _HEX_KEY.fullmatch(value):
        return bytes.fromhex(value)
    decoded = _b64decode(value)
    if decoded is not None and len(decoded) == _KEY_SIZE:
        return decoded
    raise ConfigError(
        f"{ENV_VAR} is not a valid key: expected {_KEY_SIZE} bytes written as 64 hexadecimal "
        'characters or as URL-safe base64 (generate one with: python -c "import secrets; '
        'print(secrets.token_hex(32))")'
    )


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` unless one appears there first; the file is never partial.

    The key goes to a private temporary file (``O_CREAT | O_EXCL``, mode 0600) which is then
    hard-linked into place: the link fails if another process won the race, and then its key
    is the one used.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the data directory {path.parent}: {exc.strerror}") from None
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
            os.write(fd, (secrets.token_hex(_KEY_SIZE) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile: use that key
            os.link(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot create the key file {path}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _read_key_file(path: Path) -> bytes:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"the key file {path} is not a regular file")
        if os.name == "posix" and info.st_mode & 0o077:
            raise ConfigError(
                f"the key file {path} is readable by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"restrict it with: chmod 600 {path}"
            )
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not text"
        raise ConfigError(f"cannot read the key file {path}: {reason}") from None
    if not _HEX_KEY.fullmatch(text):
        raise ConfigError(f"the key file {path} is not a valid key: expected 64 hexadecimal characters")
    return bytes.fromhex(text)
