"""Reviewers' Ed25519 keys: made, trusted, used to sign decisions and to check them.

    DATA_HOME/keys/NAME.key        the private key of reviewer NAME (PKCS#8 PEM, mode 0600, never overwritten)
    DATA_HOME/trusted_keys.toml    NAME = "BASE64 PUBLIC KEY", one line per locally trusted reviewer

A public key is written as the base64 of its 32 raw bytes. A decision's signature covers the record's canonical
body (``audit.signed_body``: every field but ``hash`` and ``signature``, so its place in the chain too), which
is why a signed approval cannot be replayed into another position or another run.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tomllib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from daedalus.errors import ConfigError
from daedalus.store.atomic import write_text_atomic
from daedalus.store.home import data_home

TRUSTED_FILE = "trusted_keys.toml"
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a file name on every system


def key_path(name: str) -> Path:
    """Where the private key of reviewer ``name`` lives in the data directory."""
    return data_home() / "keys" / f"{name}.key"


def check_name(name: str) -> str:
    if not KEY_NAME.match(name):
        raise ConfigError(f"reviewer name {name!r} cannot name a key; use letters, digits, '.', '_' or '-' "
                          "(at most 64, starting with a letter or digit)")
    return name


def new_key(name: str) -> tuple[Path, str]:
    """Make reviewer ``name``'s key pair: the private key in the data directory (mode 0600; an existing one is
    never overwritten), the public key trusted locally. Returns (private key path, base64 public key)."""
    path = key_path(check_name(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    try:  # O_EXCL: two 'keys new' at once, or a key made since, is never replaced
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"reviewer '{name}' already has a key ({path}); it is never overwritten: keep using "
                          "it, or choose another name") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = public_key_b64(private)
    trust(name, public)
    return path, public


def trust(name: str, public: str) -> None:
    """Trust ``public`` as reviewer ``name``'s key on this machine (``trusted_keys.toml``, rewritten atomically)."""
    parse_public_key(public)
    keys = trusted_keys()
    keys[check_name(name)] = public
    path = data_home() / TRUSTED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    # json.dumps quotes like a TOML basic string for these names and base64 values
    write_text_atomic(path, "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in sorted(keys.items())))


def trusted_keys() -> dict[str, str]:
    """The locally trusted public keys, by reviewer name."""
    path = data_home() / TRUSTED_FILE
    if not path.exists():
        return {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix it (NAME = \"BASE64 KEY\" lines)") from exc
    return {str(k): str(v) for k, v in doc.items() if isinstance(v, str)}


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """A reviewer's private key from its file; a missing or unusable file is a one-line error."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"key file '{path}' not found; pass an existing key to --key") from None
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read key file '{path}' ({str(exc).splitlines()[0] if str(exc) else exc!r}); "
                          "pass a key made by 'daedalus keys new NAME'") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"key file '{path}' is not an Ed25519 key; make one with 'daedalus keys new NAME'")
    return key


def public_key_b64(private: Ed25519PrivateKey) -> str:
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from its base64 text; ValueError when it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64") from exc
    if len(raw) != 32:
        raise ValueError(f"{len(raw)} bytes where an Ed25519 public key has 32")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(private: Ed25519PrivateKey, body: bytes) -> str:
    return base64.b64encode(private.sign(body)).decode()


def signature_valid(public: str, signature: str, body: bytes) -> bool:
    """Whether ``signature`` (base64) over ``body`` verifies with ``public`` (base64); malformed input is False."""
    try:
        parse_public_key(public).verify(base64.b64decode(signature, validate=True), body)
    except (InvalidSignature, ValueError, binascii.Error, TypeError):
        return False
    return True
