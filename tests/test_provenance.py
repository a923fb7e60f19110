"""Provenance: every written file carries a C2PA manifest declaring it AI-generated (real images and clips, no rendering
except one CLI still)."""

from __future__ import annotations

import datetime
import json
import stat
from pathlib import Path

import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import talkinghead
from conftest import TESTDATA, landmarks_json
from talkinghead.cli import main
from talkinghead.errors import ProvenanceError
from talkinghead.media import provenance
from talkinghead.media.image import load_image, save_image
from talkinghead.media.provenance import (
    TRAINED_ALGORITHMIC_MEDIA, ProvenanceOptions, load_credential, read_provenance, sidecar_path,
)
from talkinghead.media.video import VideoReader, VideoWriter

PHOTO = TESTDATA / "images" / "st_happy.png"
CLIP = TESTDATA / "driving" / "lp_d0.mp4"


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return list(VideoReader(CLIP, max_frames=3))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_image(PHOTO)


def _write(path: Path, options: ProvenanceOptions | None, frames: list[np.ndarray], photo: np.ndarray) -> None:
    if path.suffix in (".mp4", ".mov", ".mkv"):
        with VideoWriter(path, fps=25, provenance=options) as writer:
            for frame in frames:
                writer.write(frame)
    else:
        save_image(path, photo, provenance=options)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Studio"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _user_credential(folder: Path, *, issued_by_ca: bool = True) -> tuple[Path, Path]:
    """A user's key and chain: an ES256 signing certificate from a test CA (or a bare self-signed one)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = ec.generate_private_key(ec.SECP256R1()) if issued_by_ca else key
    ca_name = _name("Test Studio root") if issued_by_ca else _name("Test Studio signer")
    ku = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
              encipher_only=False, decipher_only=False)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **ku), critical=True)
          .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    chain = ca.public_bytes(pem)
    if issued_by_ca:
        cert = (x509.CertificateBuilder().subject_name(_name("Test Studio signer")).issuer_name(ca_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **ku),
                               critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        chain = cert.public_bytes(pem) + chain
    folder.mkdir(parents=True, exist_ok=True)
    key_file, chain_file = folder / "key.pem", folder / "chain.pem"
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    chain_file.write_bytes(chain)
    return key_file, chain_file


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv", ".png", ".jpg", ".jpeg", ".webp", ".bmp"])
def test_every_output_format_declares_itself_ai_generated(tmp_path: Path, frames, photo, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    kind = "video" if suffix in (".mp4", ".mov", ".mkv") else "still"
    _write(out, ProvenanceOptions(job=kind, details={"region": "all"}), frames, photo)

    report = read_provenance(out)
    assert report is not None and report.validation_state == "Valid"
    created = report.created
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert created["softwareAgent"] == {"name": "talkinghead", "version": talkinghead.__version__}
    assert report.job == {"kind": kind, "tool": "talkinghead", "version": talkinghead.__version__, "region": "all"}
    assert report.manifest["claim_generator_info"][0]["name"] == "talkinghead"
    assert report.local_credential
    # Only the credential's trust is reported (no trust list knows a local CA); every hash and the signature check.
    assert [f.split(":")[0] for f in report.failures] == ["signingCredential.untrusted"]
    embedded = suffix not in (".mkv", ".bmp")
    assert sidecar_path(out).is_file() != embedded
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name] + ([] if embedded else ["out.c2pa"]))
    if embedded:  # a standard reader finds it without our code
        with c2pa.Reader(str(out)) as reader:
            store = json.loads(reader.json())
        assert store["active_manifest"] == report.store["active_manifest"]
    # still a normal file
    if suffix in (".mp4", ".mov", ".mkv"):
        assert len(list(VideoReader(out))) == len(frames)
    else:
        assert load_image(out).shape == photo.shape


def test_changed_content_fails_validation(tmp_path: Path, frames, photo) -> None:
    for name in ("a.mp4", "a.mkv"):
        out = tmp_path / name
        _write(out, ProvenanceOptions(), frames, photo)
        data = bytearray(out.read_bytes())
        data[len(data) // 2] ^= 0xFF
        out.write_bytes(bytes(data))
        report = read_provenance(out)
        assert report is not None and report.validation_state == "Invalid", name
        assert any("mismatch" in f for f in report.failures)


def test_users_key_and_certificate_sign_the_manifest(tmp_path: Path, photo, monkeypatch) -> None:
    key, cert = _user_credential(tmp_path / "cred")
    out = tmp_path / "still.png"
    save_image(out, photo, provenance=ProvenanceOptions(key=key, cert=cert, job="still"))
    report = read_provenance(out)
    assert report.signature["common_name"] == "Test Studio signer"
    assert report.signature["issuer"] == "Test Studio"
    assert not report.local_credential
    assert not any("locally generated" in line for line in report.summary())
    # the same from the environment
    monkeypatch.setenv("TALKINGHEAD_C2PA_KEY", str(key))
    monkeypatch.setenv("TALKINGHEAD_C2PA_CERT", str(cert))
    save_image(out, photo, provenance=ProvenanceOptions(job="still"))
    assert read_provenance(out).signature["common_name"] == "Test Studio signer"


def test_local_credential_is_made_once_and_kept_private(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TALKINGHEAD_C2PA_DIR", str(tmp_path / "c2pa"))
    first = load_credential(ProvenanceOptions())
    assert first.local and first.alg == "es256"
    key_file = tmp_path / "c2pa" / "signer.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_credential(ProvenanceOptions()).key_pem == first.key_pem == key_file.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c2pa"]  # no temporary folder left


def test_credential_dir_honours_xdg_cache_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TALKINGHEAD_C2PA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert provenance.credential_dir() == tmp_path / "talkinghead" / "c2pa"


def test_disabled_provenance_writes_a_plain_file(tmp_path: Path, frames, photo) -> None:
    for name in ("plain.mp4", "plain.png", "plain.mkv"):
        _write(tmp_path / name, ProvenanceOptions(enabled=False), frames, photo)
        assert read_provenance(tmp_path / name) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.mkv", "plain.mp4", "plain.png"]


def test_a_signing_failure_leaves_nothing(tmp_path: Path, frames, photo, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise c2pa.C2paError("simulated signing failure")

    monkeypatch.setattr(provenance, "_sign_stream", fail)
    monkeypatch.setattr(provenance, "load_credential", lambda options: None)
    for name in ("x.mp4", "x.mkv", "x.png"):
        with pytest.raises(ProvenanceError, match="cannot sign"):
            _write(tmp_path / name, ProvenanceOptions(), frames, photo)
    assert list(tmp_path.iterdir()) == []


def _bad_credentials(tmp_path: Path) -> dict[str, tuple[Path, Path, str]]:
    key, cert = _user_credential(tmp_path / "good")
    other_key, _ = _user_credential(tmp_path / "other")
    self_key, self_cert = _user_credential(tmp_path / "self", issued_by_ca=False)
    text = tmp_path / "notes.txt"
    text.write_text("not a key\n")
    return {
        "missing key": (tmp_path / "nope.pem", cert, "not found"),
        "missing cert": (key, tmp_path / "nope.pem", "not found"),
        "key not PEM": (text, cert, "not a PEM private key"),
        "cert not PEM": (key, text, "not a PEM certificate"),
        "mismatched": (other_key, cert, "does not match"),
        "self-signed": (self_key, self_cert, "cannot sign C2PA manifests"),
    }


def test_bad_credentials_are_refused_with_one_line(tmp_path: Path) -> None:
    for case, (key, cert, message) in _bad_credentials(tmp_path).items():
        with pytest.raises(ProvenanceError, match=message) as info:
            load_credential(ProvenanceOptions(key=key, cert=cert))
        assert "\n" not in str(info.value), case
    with pytest.raises(ProvenanceError, match="both a key and its certificate"):
        load_credential(ProvenanceOptions(key=tmp_path / "good" / "key.pem"))


@pytest.mark.parametrize("case", ["missing cert", "mismatched", "self-signed"])
def test_cli_bad_credential_exits_2_before_any_work(tmp_path: Path, capsys, case: str) -> None:
    key, cert, message = _bad_credentials(tmp_path)[case]
    out = tmp_path / "still.png"
    # --weights names no folder: the credential is checked before the engine is even loaded
    rc = main(["pose", "--source", str(PHOTO), "--still", str(out), "--weights", str(tmp_path / "no-weights"),
               "--device", "cpu", "--quiet", "--c2pa-key", str(key), "--c2pa-cert", str(cert)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and message in err and "C2PA" in err
    assert not out.exists()


def test_cli_no_provenance_warns_once(tmp_path: Path, capsys) -> None:
    rc = main(["pose", "--source", str(PHOTO), "--still", str(tmp_path / "s.png"), "--weights",
               str(tmp_path / "no-weights"), "--device", "cpu", "--quiet", "--no-provenance"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2  # stops at the missing weights, after the warning
    warnings = [line for line in err if "not be marked as AI-generated" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning:")


def test_verify_prints_the_summary(tmp_path: Path, frames, photo, capsys) -> None:
    out = tmp_path / "job.mkv"
    _write(out, ProvenanceOptions(job="audio", details={"emotion": "happy"}), frames, photo)
    assert main(["verify", str(out)]) == 0
    text = capsys.readouterr().out
    assert "AI-generated (trainedAlgorithmicMedia)" in text
    assert f"talkinghead {talkinghead.__version__}" in text
    assert "job:              audio, emotion=happy" in text
    assert "signed by:        talkinghead local signer" in text
    assert "declares, does not prove" in text
    assert "sidecar job.c2pa" in text
    assert main(["verify", "--json", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["active_manifest"]


def test_verify_without_a_manifest_or_file(tmp_path: Path, capsys) -> None:
    assert main(["verify", str(PHOTO)]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no C2PA manifest" in out
    assert main(["verify", str(tmp_path / "missing.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err


def test_cli_still_is_signed_end_to_end(tmp_path: Path, lp_weights_dir: Path, capsys) -> None:
    out = tmp_path / "still.webp"
    rc = main(["pose", "--source", str(TESTDATA / "images" / "astronaut.png"), "--still", str(out), "--yaw", "10",
               "--weights", str(lp_weights_dir), "--device", "cpu", "--quiet",
               "--source-landmarks", str(landmarks_json("astronaut.png"))])
    assert rc == 0
    report = read_provenance(out)
    assert report.ai_generated and report.job["kind"] == "still" and report.validation_state == "Valid"
    assert main(["verify", str(out)]) == 0
    assert "job:              still" in capsys.readouterr().out
