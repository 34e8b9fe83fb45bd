"""The trust policy: which signers a machine accepts, and whether bundles must be signed at all.

Like the devices list, a policy is per user (~/.config/edgekit/trust.toml) and per project
(./edgekit-trust.toml, or the file $EDGEKIT_TRUST names). Unlike it, the files add up instead of the nearer one
winning: a project file can require signatures or narrow the signers, never undo the user's requirement, so a
policy dropped into a working directory cannot make a machine accept what its owner's policy refuses.

    require_signature = true
    [signers]
    ci = "ssh-ed25519 AAAAC3Nza… ci@build"    # or a PEM public key, or the path of a .pub file
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple

from edgekit.core.errors import BundleError, EdgekitError
from edgekit.runtime.signing import SIGNATURE, PublicKey, Signature, parse_public_key, verify_signature

try:
    import tomllib  # novermin (guarded: tomli below on Python < 3.11)
except ImportError:  # pragma: no cover - Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

TRUST_ENV = "EDGEKIT_TRUST"
PROJECT_FILE = "edgekit-trust.toml"


class Policy(NamedTuple):
    path: Path
    require_signature: bool
    signers: list[PublicKey]


def policy_files() -> list[Path]:
    """The user's policy and the project's (or $EDGEKIT_TRUST's), those that exist."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    candidates = [Path(config) / "edgekit" / "trust.toml"]
    candidates.append(Path(os.environ[TRUST_ENV]) if os.environ.get(TRUST_ENV) else Path(PROJECT_FILE))
    return [path for path in dict.fromkeys(candidates) if path.is_file()]


def load_policy(path: Path) -> Policy:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EdgekitError(f"cannot read the trust policy {path}: {exc}; fix or remove it") from None
    unknown = sorted(set(data) - {"require_signature", "signers"})
    require = data.get("require_signature", False)
    signers = data.get("signers", {})
    if unknown or not isinstance(require, bool) or not isinstance(signers, dict):
        raise EdgekitError(
            f"{path}: a trust policy holds require_signature = true|false and a [signers] table of name = key"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    keys = []
    for name, value in signers.items():
        if not isinstance(value, str):
            raise EdgekitError(f"{path}: signer {name!r} must be a public key or the path of a .pub file")
        text = value
        if not value.lstrip().startswith(("ssh-", "-----BEGIN")):
            key_file = (path.parent / value).expanduser()
            try:
                text = key_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise EdgekitError(f"{path}: signer {name!r}: cannot read {key_file} ({exc})") from None
        keys.append(parse_public_key(text, name, f"{path}: signer {name!r}"))
    return Policy(path, require, keys)


def policies() -> list[Policy]:
    return [load_policy(path) for path in policy_files()]


def check_trust(
    bundle: Path, manifest_bytes: bytes, files: dict, read_signature: Callable[[], bytes | None]
) -> Signature | None:
    """Enforce every policy on the bundle whose manifest is `manifest_bytes` (already verified, files listed in
    `files`): BundleError when a policy requires a signature it lacks, or a signer a policy does not list.
    Returns the signature when a policy checked one; None when no policy asks anything of this bundle."""
    active = [policy for policy in policies() if policy.require_signature or policy.signers]
    if not active:
        return None
    envelope = read_signature()
    where = f"{bundle}/{SIGNATURE}"
    if envelope is None:
        required = [str(p.path) for p in active if p.require_signature]
        if not required:
            return None  # signers listed, signature optional: an unsigned bundle is not claimed by anyone
        raise BundleError(
            f"{bundle} is not signed, and the trust policy {', '.join(required)} requires signed bundles; sign it "
            "with `edgekit sign BUNDLE --key KEY` using a key the policy lists"
        )
    signature = None
    for policy in active:
        if not policy.signers:
            raise EdgekitError(f"the trust policy {policy.path} requires signatures but lists no [signers]; add them")
        signature = verify_signature(envelope, manifest_bytes, files, policy.signers, where)
    return signature


def sign(bundle: Path, key: Path, signer: str | None) -> Signature:
    """Sign `bundle` (its hashes verified first: a signature vouches for what is there) with the private `key`."""
    from edgekit.runtime.bundle import read_manifest_bytes
    from edgekit.runtime.signing import sign_bundle

    raw, manifest = read_manifest_bytes(bundle, verify=True)
    return sign_bundle(bundle, raw, manifest.files, key, signer)


def verify(bundle: Path, keys: list[PublicKey]) -> Signature:
    """The bundle's signature, verified against `keys`, else against every policy that lists signers."""
    from edgekit.runtime.bundle import read_manifest_bytes, read_signature

    raw, manifest = read_manifest_bytes(bundle, verify=True)
    envelope = read_signature(bundle)
    if envelope is None:
        raise BundleError(f"{bundle} is not signed; sign it with `edgekit sign BUNDLE --key KEY`")
    listing = [policy for policy in policies() if policy.signers]
    if not keys and not listing:
        raise EdgekitError(
            "nothing to verify the signature against: give --key PUBLIC_KEY, or list signers in a trust policy "
            f"({PROJECT_FILE} or ~/.config/edgekit/trust.toml)"
        )
    where = f"{bundle}/{SIGNATURE}"
    signature = None
    for group in [keys] if keys else [policy.signers for policy in listing]:
        signature = verify_signature(envelope, raw, dict(manifest.files), group, where)
    assert signature is not None
    return signature


def describe(bundle: Path, manifest_bytes: bytes, files: dict) -> str:
    """One line for `inspect`: who signed the bundle and whether this machine's policies trust them."""
    from edgekit.runtime.bundle import read_signature

    envelope = read_signature(bundle)
    if envelope is None:
        return "unsigned"
    listing = [policy for policy in policies() if policy.signers]
    where = f"{bundle}/{SIGNATURE}"
    try:
        if not listing:
            found = verify_signature(envelope, manifest_bytes, files, [], where)
            return f"by {found.signer} ({found.keyid}, {found.signed_at}); not checked: no trust policy lists signers"
        for policy in listing:
            found = verify_signature(envelope, manifest_bytes, files, policy.signers, where)
        return f"by {found.signer} ({found.keyid}, {found.signed_at}); trusted as {found.trusted_as}"
    except BundleError as exc:
        return f"NOT TRUSTED: {exc}"
