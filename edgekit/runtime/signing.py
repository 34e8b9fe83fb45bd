"""Who made a bundle: an Ed25519 signature over its manifest and every file it lists.

The manifest's hashes prove a bundle is intact, not who made it. `signature.json` beside the manifest is a
DSSE envelope (the Secure Systems Lab's Dead Simple Signing Envelope) around an in-toto v1 Statement whose
subject is manifest.json and whose predicate lists every file of the manifest with its sha256: the layout
OpenSSF's model-signing writes. model-signing itself cannot be used: it needs Python 3.9+ (JetPack 5 boards
run 3.8) and its sigstore-models dependency needs typing-extensions >= 4.14.1, which LiteRT's converter (xdsl)
forbids; the `cryptography` package signs and verifies on every edgekit machine. Keys are Ed25519, as PEM
(PKCS#8 / SubjectPublicKeyInfo) or OpenSSH files (a fleet's existing `ssh-keygen -t ed25519` keys work).
"""

from __future__ import annotations

import base64
import datetime
import getpass
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from edgekit.core.errors import BundleError, EdgekitError
from edgekit.core.files import write_text_atomic
from edgekit.core.versions import EDGEKIT_VERSION

SIGNATURE = "signature.json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://edgekit.dev/bundle-signature/v1"
MAX_SIGNATURE_BYTES = 8 << 20
PASSPHRASE_ENV = "EDGEKIT_KEY_PASSPHRASE"  # never a command-line argument: it would sit in shell history


class PublicKey(NamedTuple):
    key: Any  # cryptography's Ed25519PublicKey
    keyid: str  # "SHA256:" + base64 of the raw key's sha256, as ssh-keygen -l shows it
    name: str  # who it belongs to, as the trust policy (or the key file) names it


class Signature(NamedTuple):
    """A verified signature: by whom, when, and the key."""

    signer: str
    keyid: str
    signed_at: str
    trusted_as: str | None  # the trusted key's name, or None when no trusted key made it


def keyid_of(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def parse_public_key(text: str, name: str, where: str) -> PublicKey:
    """An Ed25519 public key from one OpenSSH line ("ssh-ed25519 AAAA… comment") or a PEM block."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_ssh_public_key(text.encode())
    except (ValueError, TypeError) as exc:
        raise EdgekitError(f"{where}: not a public key ({exc}); give an ssh-ed25519 line or a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EdgekitError(f"{where}: edgekit signatures use Ed25519 keys (ssh-keygen -t ed25519), not this kind")
    comment = text.split()[2] if not text.startswith("-----BEGIN") and len(text.split()) > 2 else ""
    return PublicKey(key, keyid_of(key), name or comment or keyid_of(key))


def load_private_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EdgekitError(f"cannot read the signing key {path}: {exc.strerror}") from None
    passphrase = os.environ.get(PASSPHRASE_ENV)
    secret = passphrase.encode() if passphrase else None
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, secret)
        else:
            key = serialization.load_pem_private_key(data, secret)
    except (ValueError, TypeError) as exc:
        hint = f"set {PASSPHRASE_ENV} for an encrypted key" if b"ENCRYPTED" in data or "encrypt" in str(exc) else ""
        raise EdgekitError(f"{path} is not a usable private key ({exc}){'; ' + hint if hint else ''}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise EdgekitError(f"{path}: edgekit signs with Ed25519 keys; make one with ssh-keygen -t ed25519 -f KEY")
    return key


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is signed, type and body bound together."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign_bundle(
    bundle: Path, manifest_bytes: bytes, files: Mapping[str, str], key_path: Path, signer: str | None
) -> Signature:
    """Write `bundle`/signature.json over the manifest (its exact bytes) and its files."""
    key = load_private_key(key_path)
    keyid = keyid_of(key.public_key())
    signer = signer or f"{getpass.getuser()}@{socket.gethostname()}"
    signed_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "manifest.json", "digest": {"sha256": hashlib.sha256(manifest_bytes).hexdigest()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"files": dict(files), "signer": signer, "signed_at": signed_at, "edgekit": EDGEKIT_VERSION},
    }
    payload = json.dumps(statement, sort_keys=True).encode()
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(key.sign(_pae(PAYLOAD_TYPE, payload))).decode()}],
    }
    write_text_atomic(bundle / SIGNATURE, json.dumps(envelope, indent=2) + "\n")
    return Signature(signer, keyid, signed_at, None)


def verify_signature(
    envelope_bytes: bytes, manifest_bytes: bytes, files: Mapping[str, str], keys: Sequence[PublicKey], where: str
) -> Signature:
    """The signature in `envelope_bytes` checked against the manifest and its files; with `keys`, made by one of
    them (trusted_as names it), else only self-consistent (trusted_as None). BundleError when it does not hold."""
    from cryptography.exceptions import InvalidSignature

    from edgekit.runtime.manifest import parse_json

    envelope = parse_json(envelope_bytes.decode("utf-8", "replace"), where)
    try:
        if envelope["payloadType"] != PAYLOAD_TYPE:
            raise ValueError(f"payloadType {envelope['payloadType']!r}")
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = [(str(s["keyid"]), base64.b64decode(s["sig"], validate=True)) for s in envelope["signatures"]]
        statement = json.loads(payload)
        predicate = statement["predicate"]
        if statement["_type"] != STATEMENT_TYPE or statement["predicateType"] != PREDICATE_TYPE:
            raise ValueError("not an edgekit bundle statement")
        subject = statement["subject"][0]["digest"]["sha256"]
        signer, signed_at, signed_files = str(predicate["signer"]), str(predicate["signed_at"]), predicate["files"]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise BundleError(
            f"{where} is not an edgekit signature ({exc}); sign the bundle again with `edgekit sign`"
        ) from None
    if subject != hashlib.sha256(manifest_bytes).hexdigest() or signed_files != dict(files):
        raise BundleError(
            f"{where} was made for another state of this bundle (the manifest or its files changed after signing, "
            "e.g. by `edgekit build`); sign it again with `edgekit sign`"
        )
    for key in keys:
        for keyid, sig in signatures:
            if keyid != key.keyid:
                continue
            try:
                key.key.verify(sig, _pae(PAYLOAD_TYPE, payload))
            except InvalidSignature:
                raise BundleError(f"{where}: the signature by {key.name} ({keyid}) does not verify; the bundle or "
                                  "its signature was altered") from None  # fmt: skip
            return Signature(signer, keyid, signed_at, key.name)
    if keys:
        raise BundleError(
            f"{where}: signed by {signer!r} with key {', '.join(k for k, _ in signatures)}, which no trusted key "
            f"matches ({', '.join(k.name for k in keys)}); add the key to your trust policy if you trust it"
        )
    return Signature(signer, signatures[0][0] if signatures else "", signed_at, None)
