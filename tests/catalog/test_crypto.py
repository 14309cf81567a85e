from __future__ import annotations

import base64
import os
import secrets
import stat
import threading
from pathlib import Path

import pytest

from sluice.catalog.crypto import PREFIX, SecretBox, load_or_create_key
from sluice.errors import ConfigError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SECRET = "s3cr3t-påsswörd 🔑"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- SecretBox -------------------------------------------------------------------------------


@pytest.mark.parametrize("plaintext", ["", "x", SECRET, "a" * 100_000])
def test_round_trip(plaintext: str) -> None:
    box = SecretBox(KEY)
    token = box.encrypt(plaintext)
    assert token.startswith(PREFIX) and token.startswith("enc:v1:")
    assert len(plaintext) < 8 or plaintext not in token
    assert box.decrypt(token) == plaintext
    assert SecretBox(KEY).decrypt(token) == plaintext


def test_token_is_urlsafe_base64_of_nonce_and_ciphertext() -> None:
    token = SecretBox(KEY).encrypt("hello")
    blob = base64.urlsafe_b64decode(token[len(PREFIX) :])
    assert len(blob) == 12 + len("hello") + 16  # nonce + ciphertext + GCM tag


def test_every_encryption_uses_a_new_nonce() -> None:
    box = SecretBox(KEY)
    tokens = {box.encrypt(SECRET) for _ in range(50)}
    assert len(tokens) == 50
    nonces = {base64.urlsafe_b64decode(t[len(PREFIX) :])[:12] for t in tokens}
    assert len(nonces) == 50


def test_is_encrypted() -> None:
    box = SecretBox(KEY)
    assert SecretBox.is_encrypted(box.encrypt("x"))
    assert box.is_encrypted("enc:v1:anything")
    for value in ["plain", "", "enc:v2:abc", "ENC:V1:abc", None, 42, b"enc:v1:abc", ["enc:v1:abc"]]:
        assert not SecretBox.is_encrypted(value)


def test_wrong_key_is_a_config_error_without_secrets() -> None:
    token = SecretBox(KEY).encrypt(SECRET)
    with pytest.raises(ConfigError) as info:
        SecretBox(OTHER_KEY).decrypt(token)
    message = str(info.value)
    assert "key" in message
    for leaked in (SECRET, KEY.hex(), OTHER_KEY.hex(), token):
        assert leaked not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def _flip(token: str, index: int) -> str:
    blob = bytearray(base64.urlsafe_b64decode(token[len(PREFIX) :]))
    blob[index] ^= 0x01
    return PREFIX + base64.urlsafe_b64encode(bytes(blob)).decode()


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda t: _flip(t, 0), id="nonce-bit"),
        pytest.param(lambda t: _flip(t, 14), id="ciphertext-bit"),
        pytest.param(lambda t: _flip(t, -1), id="tag-bit"),
        pytest.param(lambda t: t[:-8], id="truncated"),
        pytest.param(lambda t: PREFIX + base64.urlsafe_b64encode(b"short").decode(), id="too-short"),
        pytest.param(lambda t: PREFIX, id="empty"),
        pytest.param(lambda t: t + "!!", id="not-base64"),
        pytest.param(lambda t: t.replace("-", "+").replace("_", "/") + "+/", id="standard-alphabet"),
        pytest.param(lambda t: t[len(PREFIX) :], id="no-prefix"),
        pytest.param(lambda t: "enc:v2:" + t[len(PREFIX) :], id="other-version"),
    ],
)
def test_corrupt_token_is_a_config_error(corrupt: object) -> None:
    box = SecretBox(KEY)
    token = box.encrypt(SECRET)
    assert callable(corrupt)
    bad = corrupt(token)
    with pytest.raises(ConfigError) as info:
        box.decrypt(bad)
    assert SECRET not in str(info.value)
    assert KEY.hex() not in str(info.value)


def test_key_must_be_32_bytes() -> None:
    for key in (b"", b"x" * 16, b"x" * 31, b"x" * 33):
        with pytest.raises(ConfigError, match="32 bytes"):
            SecretBox(key)
    assert "key hidden" in repr(SecretBox(KEY))
    assert KEY.hex() not in repr(SecretBox(KEY))


# --- load_or_create_key: the key file --------------------------------------------------------


def test_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "does" / "not" / "exist"
    key = load_or_create_key(data_dir, None)
    assert isinstance(key, bytes) and len(key) == 32
    key_file = data_dir / "secret.key"
    assert _mode(key_file) == 0o600
    assert key_file.read_text().strip() == key.hex()
    assert sorted(p.name for p in data_dir.iterdir()) == ["secret.key"]  # no temporary file left

    assert load_or_create_key(data_dir, None) == key
    assert load_or_create_key(data_dir, "") == key  # blank means unset
    assert load_or_create_key(data_dir, "  \n") == key


def test_key_file_mode_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load_or_create_key(tmp_path, None)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "secret.key") == 0o600


def test_concurrent_starts_agree_on_one_key(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)
    keys: list[bytes] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            keys.append(load_or_create_key(tmp_path, None))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(keys) == 8 and len(set(keys)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.key"]


def test_existing_key_file_is_used(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    key_file = tmp_path / "secret.key"
    key_file.write_text(key.hex().upper() + "\n")
    key_file.chmod(0o600)
    assert load_or_create_key(tmp_path, None) == key


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    load_or_create_key(tmp_path, None)
    key_file = tmp_path / "secret.key"
    key_file.chmod(mode)
    with pytest.raises(ConfigError) as info:
        load_or_create_key(tmp_path, None)
    assert str(key_file) in str(info.value)
    assert "chmod 600" in str(info.value)
    assert key_file.read_text().strip() not in str(info.value)


def test_owner_read_only_key_file_is_accepted(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path, None)
    (tmp_path / "secret.key").chmod(0o400)
    assert load_or_create_key(tmp_path, None) == key


@pytest.mark.parametrize(
    "content",
    ["", "\n", "abc", "zz" * 32, "ab" * 31, "ab" * 33, base64.urlsafe_b64encode(b"k" * 32).decode()],
    ids=["empty", "newline", "short", "not-hex", "31-bytes", "33-bytes", "base64"],
)
def test_key_file_with_wrong_content_is_refused(tmp_path: Path, content: str) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(content)
    key_file.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_or_create_key(tmp_path, None)
    assert str(key_file) in str(info.value)
    assert key_file.read_text() == content  # never overwritten


def test_key_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.key").mkdir()
    with pytest.raises(ConfigError, match=r"secret\.key"):
        load_or_create_key(tmp_path, None)


# --- load_or_create_key: SLUICE_SECRET_KEY ---------------------------------------------------


def test_env_key_as_hex(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    assert load_or_create_key(tmp_path, key.hex()) == key
    assert load_or_create_key(tmp_path, key.hex().upper()) == key
    assert load_or_create_key(tmp_path, f"  {key.hex()}\n") == key
    assert not (tmp_path / "secret.key").exists()  # the env key wins: no file is made


def test_env_key_as_urlsafe_base64(tmp_path: Path) -> None:
    key = b"\xff\xfe" * 16  # encodes with '-' and '_'
    encoded = base64.urlsafe_b64encode(key).decode()
    assert "=" in encoded and ("-" in encoded or "_" in encoded)
    assert load_or_create_key(tmp_path, encoded) == key
    assert load_or_create_key(tmp_path, encoded.rstrip("=")) == key
    assert not (tmp_path / "secret.key").exists()


def test_env_key_wins_over_an_existing_key_file(tmp_path: Path) -> None:
    file_key = load_or_create_key(tmp_path, None)
    env_key = secrets.token_bytes(32)
    assert load_or_create_key(tmp_path, env_key.hex()) == env_key != file_key


@pytest.mark.parametrize(
    "value",
    [
        "ab" * 31,
        "ab" * 33,
        "zz" * 32,
        "not a key",
        base64.urlsafe_b64encode(b"k" * 16).decode(),
        base64.urlsafe_b64encode(b"k" * 33).decode(),
        base64.b64encode(b"\xff\xfe" * 16).decode(),  # standard, not URL-safe, alphabet
    ],
    ids=["hex-31", "hex-33", "not-hex", "words", "b64-16", "b64-33", "b64-standard"],
)
def test_bad_env_key_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_or_create_key(tmp_path, value)
    message = str(info.value)
    assert "SLUICE_SECRET_KEY" in message
    assert "64 hexadecimal" in message and "base64" in message
    assert value not in message
    assert not (tmp_path / "secret.key").exists()


def test_keys_from_file_and_env_encrypt_compatibly(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path, None)
    token = SecretBox(key).encrypt(SECRET)
    same = load_or_create_key(tmp_path / "elsewhere", (tmp_path / "secret.key").read_text())
    assert SecretBox(same).decrypt(token) == SECRET
