"""Signed bundles (issue 31): real Ed25519 keys made by ssh-keygen and cryptography, real signatures, the trust
policy enforced where bundles are loaded and built, and every way a signature can fail to hold."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import assert_json_schema

Run = Callable[..., subprocess.CompletedProcess[str]]


def _ssh_key(folder: Path, name: str, passphrase: str = "") -> tuple[Path, Path]:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", f"{name}@fleet", "-f", str(key)],
                   check=True, capture_output=True)  # fmt: skip
    return key, key.with_suffix(".pub")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A user of their own: no trust policy but the ones a test writes."""
    home = tmp_path / "home"
    (home / "config" / "edgekit").mkdir(parents=True)
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config")}


@pytest.fixture
def signed(bundle: Path, tmp_path: Path, edgekit_cli: Run, env: dict[str, str]) -> dict[str, Path]:
    keys = tmp_path / "keys"
    keys.mkdir()
    private, public = _ssh_key(keys, "ci")
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    result = edgekit_cli("sign", copy, "--key", private, "--signer", "ci pipeline", "--json", env=env)
    assert result.returncode == 0, result.stderr
    (record,) = assert_json_schema(result.stdout, "sign")
    assert record["signer"] == "ci pipeline" and record["keyid"].startswith("SHA256:")
    return {"bundle": copy, "private": private, "public": public, "keys": keys}


def _policy(env: dict[str, str], text: str) -> None:
    (Path(env["XDG_CONFIG_HOME"]) / "edgekit" / "trust.toml").write_text(text)


def _refused(result: subprocess.CompletedProcess[str], needle: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr


def test_verify_accepts_the_signer_s_key_and_names_the_signer(signed: dict, edgekit_cli: Run, env: dict) -> None:
    result = edgekit_cli("verify", signed["bundle"], "--key", signed["public"], "--json", env=env)
    assert result.returncode == 0, result.stderr
    (record,) = assert_json_schema(result.stdout, "verify")
    assert record["signer"] == "ci pipeline"
    envelope = json.loads((signed["bundle"] / "signature.json").read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"  # DSSE around an in-toto statement


def test_another_key_an_altered_signature_or_bundle_is_refused(
    signed: dict, edgekit_cli: Run, env: dict, tmp_path: Path
) -> None:
    bundle = signed["bundle"]
    _, other_public = _ssh_key(signed["keys"], "intruder")
    _refused(edgekit_cli("verify", bundle, "--key", other_public, env=env), "which no trusted key matches")

    envelope = json.loads((bundle / "signature.json").read_text())
    forged = dict(envelope, signatures=[{**envelope["signatures"][0], "sig": "A" * 86 + "=="}])
    (bundle / "signature.json").write_text(json.dumps(forged))
    _refused(edgekit_cli("verify", bundle, "--key", signed["public"], env=env), "does not verify")
    (bundle / "signature.json").write_text(json.dumps(envelope))

    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["classes"][0] = "renamed"  # a manifest edit someone re-hashed nothing for: still the same files
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    _refused(edgekit_cli("verify", bundle, "--key", signed["public"], env=env), "another state of this bundle")

    unsigned = tmp_path / "unsigned"
    shutil.copytree(bundle, unsigned)
    (unsigned / "signature.json").unlink()
    _refused(edgekit_cli("verify", unsigned, "--key", signed["public"], env=env), "is not signed")


def test_a_signature_moved_onto_another_bundle_does_not_hold(
    signed: dict, bundle: Path, edgekit_cli: Run, env: dict, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["created"] = "2020-01-01T00:00:00+00:00"
    (other / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(signed["bundle"] / "signature.json", other / "signature.json")
    _refused(edgekit_cli("verify", other, "--key", signed["public"], env=env), "another state of this bundle")


def test_the_trust_policy_decides_what_loads(
    signed: dict, bundle: Path, image: Path, edgekit_cli: Run, env: dict, tmp_path: Path
) -> None:
    public_line = signed["public"].read_text().strip()
    _policy(env, f'require_signature = true\n[signers]\nci = "{public_line}"\n')
    assert edgekit_cli("predict", signed["bundle"], image, env=env).returncode == 0
    inspected = edgekit_cli("inspect", signed["bundle"], "--json", env=env)
    (info,) = assert_json_schema(inspected.stdout, "inspect")
    assert info["signature"].startswith("by ci pipeline (SHA256:") and info["signature"].endswith("trusted as ci")

    _refused(edgekit_cli("predict", bundle, image, env=env), "requires signed bundles")
    intruder_key, _ = _ssh_key(signed["keys"], "intruder")
    theirs = tmp_path / "theirs"
    shutil.copytree(bundle, theirs)
    assert edgekit_cli("sign", theirs, "--key", intruder_key, env=env).returncode == 0
    _refused(edgekit_cli("predict", theirs, image, env=env), "which no trusted key matches")
    assert "NOT TRUSTED" in edgekit_cli("inspect", theirs, env=env).stdout

    # A project policy in the working directory adds to the user's, it cannot undo it.
    project = tmp_path / "project"
    project.mkdir()
    (project / "edgekit-trust.toml").write_text("require_signature = false\n")
    _refused(edgekit_cli("predict", bundle, image, env=env, cwd=project), "requires signed bundles")
    (project / "edgekit-trust.toml").write_text(
        f'[signers]\nintruder = "{(signed["keys"] / "intruder.pub").read_text().strip()}"\n'
    )
    _refused(edgekit_cli("predict", signed["bundle"], image, env=env, cwd=project), "which no trusted key matches")


def test_the_python_api_enforces_the_policy_too(signed: dict, bundle: Path, env: dict, monkeypatch) -> None:
    import edgekit
    from edgekit.core.errors import BundleError

    monkeypatch.setenv("XDG_CONFIG_HOME", env["XDG_CONFIG_HOME"])
    _policy(env, f'require_signature = true\n[signers]\nci = "{signed["public"].name}"\n')
    shutil.copy(signed["public"], Path(env["XDG_CONFIG_HOME"]) / "edgekit" / signed["public"].name)  # a .pub path
    assert edgekit.load(signed["bundle"]).predict  # signed by ci: loads
    with pytest.raises(BundleError, match="requires signed bundles"):
        edgekit.load(bundle)


def test_pem_keys_and_encrypted_keys_sign(bundle: Path, edgekit_cli: Run, env: dict, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    private = tmp_path / "ci.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.BestAvailableEncryption(b"s3cret")))  # fmt: skip
    public = tmp_path / "ci.pub.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    _refused(edgekit_cli("sign", copy, "--key", private, env=env), "EDGEKIT_KEY_PASSPHRASE")
    assert not (copy / "signature.json").exists()
    result = edgekit_cli("sign", copy, "--key", private, env={**env, "EDGEKIT_KEY_PASSPHRASE": "s3cret"})
    assert result.returncode == 0, result.stderr
    assert edgekit_cli("verify", copy, "--key", public, env=env).returncode == 0
    rsa = tmp_path / "rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)], check=True)
    _refused(edgekit_cli("sign", copy, "--key", rsa, env=env), "Ed25519")


def test_signing_an_altered_bundle_is_refused(bundle: Path, edgekit_cli: Run, env: dict, tmp_path: Path) -> None:
    """A signature vouches for what is there: the hashes are checked first."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    with (copy / "model.onnx").open("r+b") as model:
        model.seek(100)
        model.write(b"\x00")
    key, _ = _ssh_key(tmp_path, "ci")
    _refused(edgekit_cli("sign", copy, "--key", key, env=env), "does not match the sha256")
    assert not (copy / "signature.json").exists()
