"""`edgekit sign` and `edgekit verify`: who made a bundle (runtime/signing.py, runtime/trust.py)."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli.options import json_option, print_json

bundle_argument = click.argument("bundle", type=click.Path(path_type=Path, file_okay=False, exists=True))


@click.command("sign")
@bundle_argument
@click.option(
    "--key",
    "key",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Ed25519 private key (OpenSSH, as ssh-keygen -t ed25519 writes it, or PEM); an encrypted key's "
    "passphrase comes from $EDGEKIT_KEY_PASSPHRASE.",
)
@click.option("--signer", default=None, help="Who signs, as inspect will show it (default: user@host).")
@json_option
def sign_command(bundle: Path, key: Path, signer: str | None, as_json: bool) -> None:
    """Sign BUNDLE: its hashes are verified, then signature.json covers the manifest and every file it lists.

    Machines whose trust policy lists the matching public key then accept it; `edgekit build` changes
    the bundle, so sign again after it (or give build --key).
    """
    from edgekit.runtime.trust import sign

    signature = sign(bundle, key, signer)
    record = {"bundle": str(bundle), "signer": signature.signer, "keyid": signature.keyid,
              "signed_at": signature.signed_at}  # fmt: skip
    if as_json:
        print_json(record)
        return
    click.echo(f"signed {bundle} as {signature.signer} ({signature.keyid})")


@click.command("verify")
@bundle_argument
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="PUBLIC_KEY",
    help="A public key file (ssh-ed25519 .pub or PEM) the signature must be made with; repeat for several. "
    "Default: the signers of your trust policies.",
)
@json_option
def verify_command(bundle: Path, keys: tuple[str, ...], as_json: bool) -> None:
    """Check BUNDLE's hashes and its signature; exit 2 if it is unsigned, altered or signed by no trusted key."""
    from edgekit.core.errors import EdgekitError
    from edgekit.runtime.signing import parse_public_key
    from edgekit.runtime.trust import verify

    public = []
    for key in keys:
        try:
            text = Path(key).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise EdgekitError(f"cannot read the public key {key}: {exc}") from None
        public.append(parse_public_key(text, "", key))
    signature = verify(bundle, public)
    record = {"bundle": str(bundle), "signer": signature.signer, "keyid": signature.keyid,
              "signed_at": signature.signed_at, "trusted_as": signature.trusted_as}  # fmt: skip
    if as_json:
        print_json(record)
        return
    click.echo(f"{bundle}: intact, signed by {signature.signer} ({signature.keyid}) on {signature.signed_at}, "
               f"trusted as {signature.trusted_as}")  # fmt: skip
