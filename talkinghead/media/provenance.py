"""Content provenance: a signed C2PA manifest on every file talkinghead writes.

Each output (video or image) gets a C2PA manifest store (``c2pa-python``,
the Content Authenticity Initiative's bindings of ``c2pa-rs``) whose
``c2pa.actions.v2`` assertion holds one ``c2pa.created`` action with
``digitalSourceType`` = IPTC ``trainedAlgorithmicMedia`` (made by a trained
model), ``softwareAgent`` = talkinghead and its version, and the job kind; an
``org.talkinghead.job`` assertion repeats the kind with a few non-private job
options.  That is the machine-readable "this is AI-generated" mark that the
EU AI Act (art. 50(2)) asks for.

Where the manifest goes:

* MP4, MOV, PNG, JPEG, WebP: embedded in the file (c2pa-rs has a hard
  binding for each).
* MKV and BMP: c2pa-rs has no embedding for Matroska or BMP, so the manifest
  store is written as a sidecar ``<stem>.c2pa`` next to the file (the C2PA
  convention for external manifests), bound to the file's bytes by a
  ``c2pa.hash.data`` hash over the whole file.  Moving the file without its
  sidecar loses the mark; prefer ``.mp4``.

Signing credential: the user's private key and PEM certificate chain
(:class:`ProvenanceOptions` ``key`` / ``cert``, or the environment variables
``TALKINGHEAD_C2PA_KEY`` / ``TALKINGHEAD_C2PA_CERT``); otherwise a credential
generated once on this machine (a local root CA plus an ES256 signing
certificate, in ``$XDG_CACHE_HOME/talkinghead/c2pa``, default
``~/.cache/talkinghead/c2pa``; c2pa-rs refuses to sign with a bare
self-signed certificate).  A locally generated credential *declares* that the
file is AI-generated; it does not prove who made it (no trust list knows it,
so readers report it as untrusted).

Signing happens once per file, on the finished temporary file, before it is
renamed onto the target (:func:`talkinghead.media._files.atomic_output`), so
the target only ever appears signed and a failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import io
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from talkinghead.errors import MediaError, ProvenanceError

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
"""IPTC digital source type of media created by a trained model (C2PA's term for generative AI output)."""

JOB_ASSERTION = "org.talkinghead.job"
"""Label of talkinghead's own assertion (job kind, tool, version, non-private options)."""

KEY_ENV = "TALKINGHEAD_C2PA_KEY"
"""Environment variable naming the PEM private key to sign with."""

CERT_ENV = "TALKINGHEAD_C2PA_CERT"
"""Environment variable naming the PEM certificate chain (signing certificate first) to sign with."""

DIR_ENV = "TALKINGHEAD_C2PA_DIR"
"""Environment variable naming the folder of the locally generated credential (see :func:`credential_dir`)."""

LOCAL_ISSUER = "talkinghead local credential"
"""Organization name of the locally generated certificates (how :func:`read_provenance` recognises them)."""

EMBEDDED_SUFFIXES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".png": "image/png",
                     ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
"""Output suffixes whose manifest is embedded in the file, with the MIME type c2pa-rs is given."""

SIDECAR_SUFFIXES = {".mkv": "video/x-matroska", ".bmp": "image/bmp"}
"""Output suffixes c2pa-rs cannot embed into: their manifest is a sidecar ``<stem>.c2pa``."""

_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}}
# No thumbnail in the manifest: it would add up to ~700 kB (a WebP gets a PNG
# thumbnail) to outputs of ~20 kB, and says nothing a viewer does not show.


@dataclass(frozen=True)
class ProvenanceOptions:
    """Whether and how the files of one job are marked.

    Attributes:
        enabled: write a C2PA manifest (default); ``False`` writes plain files.
        key: PEM private key file (EC P-256/384/521, RSA or Ed25519); with
            ``cert``.  ``None``: ``$TALKINGHEAD_C2PA_KEY``, else the local
            credential.
        cert: PEM certificate chain file, signing certificate first, the
            certificate of ``key``.  ``None``: ``$TALKINGHEAD_C2PA_CERT``.
        job: job kind recorded in the manifest (``"video"``,
            ``"source-video"``, ``"motion"``, ``"audio"``, ``"pose"``,
            ``"still"``, ``"preview"``, ``"live"`` ...).
        details: non-private job options recorded with it (no file names),
            JSON values.
    """

    enabled: bool = True
    key: str | os.PathLike[str] | None = None
    cert: str | os.PathLike[str] | None = None
    job: str = "video"
    details: Mapping[str, Any] = field(default_factory=dict)

    def for_job(self, job: str, **details: Any) -> ProvenanceOptions:
        """A copy with ``job`` and ``details`` replaced (``None`` values dropped)."""
        return dataclasses.replace(self, job=job, details={k: v for k, v in details.items() if v is not None})

    def key_and_cert(self) -> tuple[Path, Path] | None:
        """The user's (key, cert) paths from the options or the environment; ``None``: use the local credential.

        Raises:
            ProvenanceError: only one of key and certificate is given.
        """
        key = self.key if self.key is not None else os.environ.get(KEY_ENV) or None
        cert = self.cert if self.cert is not None else os.environ.get(CERT_ENV) or None
        if key is None and cert is None:
            return None
        if key is None or cert is None:
            missing = "private key (--c2pa-key or $TALKINGHEAD_C2PA_KEY)" if key is None else \
                "certificate chain (--c2pa-cert or $TALKINGHEAD_C2PA_CERT)"
            raise ProvenanceError(f"C2PA signing needs both a key and its certificate: the {missing} is missing")
        return Path(key).expanduser(), Path(cert).expanduser()


@dataclass(frozen=True)
class Credential:
    """A private key and certificate chain that c2pa-rs accepted in a trial signature.

    Attributes:
        key_pem: PEM private key.
        chain_pem: PEM certificates, signing certificate first.
        alg: c2pa signing algorithm name (``"es256"``, ``"ps256"``, ``"ed25519"`` ...).
        local: the locally generated credential (declares, does not prove).
        subject: the signing certificate's subject, for messages.
    """

    key_pem: bytes
    chain_pem: bytes
    alg: str
    local: bool
    subject: str


# ----------------------------------------------------------------- credentials
def credential_dir() -> Path:
    """Folder of the locally generated credential.

    ``$TALKINGHEAD_C2PA_DIR`` when set, else ``$XDG_CACHE_HOME/talkinghead/c2pa``
    (default ``~/.cache/talkinghead/c2pa``).
    """
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "talkinghead" / "c2pa"


def load_credential(options: ProvenanceOptions) -> Credential:
    """The credential ``options`` sign with, checked by a trial signature (call it before any rendering).

    Raises:
        ProvenanceError: key or certificate missing, not PEM, not matching each
            other, or refused by c2pa-rs; the local credential cannot be created.
    """
    paths = options.key_and_cert()
    if paths is None:
        folder = credential_dir()
        return _local_credential(str(folder), *_mtimes(folder / "signer.key", folder / "chain.pem"))
    key, cert = paths
    return _user_credential(str(key), str(cert), *_mtimes(key, cert))


def _mtimes(*paths: Path) -> tuple[float | None, ...]:
    """Modification times (cache keys: a replaced file is read again); ``None`` for a missing file."""
    out = []
    for p in paths:
        try:
            out.append(p.stat().st_mtime_ns)
        except OSError:
            out.append(None)
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _user_credential(key_path: str, cert_path: str, *_mtimes: float | None) -> Credential:
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    key_bytes = _read(Path(key_path), "private key")
    cert_bytes = _read(Path(cert_path), "certificate chain")
    try:
        key = serialization.load_pem_private_key(key_bytes, password=None)
    except TypeError:
        raise ProvenanceError(f"C2PA private key {key_path} is encrypted; give an unencrypted PEM key") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ProvenanceError(f"C2PA private key {key_path} is not a PEM private key ({_first_line(exc)})") from None
    try:
        certs = x509.load_pem_x509_certificates(cert_bytes)
    except ValueError as exc:
        raise ProvenanceError(f"C2PA certificate {cert_path} is not a PEM certificate chain ({_first_line(exc)})") from None
    if certs[0].public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ProvenanceError(f"C2PA key {key_path} does not match the certificate {cert_path} "
                              "(its first certificate must be the key's signing certificate)")
    pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    credential = Credential(pkcs8, cert_bytes, _algorithm(key, key_path), False, certs[0].subject.rfc4514_string())
    _trial_sign(credential, f"C2PA certificate {cert_path}")
    return credential


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ProvenanceError(f"C2PA {what} file not found: {path}") from None
    except OSError as exc:
        raise ProvenanceError(f"cannot read the C2PA {what} {path}: {exc.strerror}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _algorithm(key: Any, key_path: str) -> str:
    """c2pa signing algorithm for a private key (ECDSA by curve, RSA-PSS, Ed25519)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
    elif isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise ProvenanceError(f"C2PA private key {key_path} is of a kind C2PA cannot sign with; "
                          "use an EC P-256/P-384/P-521, RSA or Ed25519 key")


def _trial_sign(credential: Credential, what: str) -> None:
    """Sign a tiny in-memory PNG: c2pa-rs checks the certificate profile and the key only when signing."""
    import c2pa
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    png.seek(0)
    try:
        _sign_stream(credential, ProvenanceOptions(job="check"), "image/png", png, io.BytesIO(), "check.png")
    except c2pa.C2paError as exc:
        raise ProvenanceError(f"{what} cannot sign C2PA manifests: {_first_line(exc)} "
                              "(C2PA needs a signing certificate issued by a CA, with key usage digitalSignature, "
                              "matching the key)") from None


@functools.lru_cache(maxsize=4)
def _local_credential(folder: str, *_mtimes: float | None) -> Credential:
    """Load the local credential from ``folder``, creating it (once, atomically) when missing."""
    from cryptography import x509

    root = Path(folder)
    key_file, chain_file = root / "signer.key", root / "chain.pem"
    if not (key_file.is_file() and chain_file.is_file()):
        _create_local_credential(root)
    key_pem, chain_pem = key_file.read_bytes(), chain_file.read_bytes()
    subject = x509.load_pem_x509_certificates(chain_pem)[0].subject.rfc4514_string()
    credential = Credential(key_pem, chain_pem, "es256", True, subject)
    _trial_sign(credential, f"the local C2PA credential in {root} (delete the folder to make a new one)")
    return credential


def _local_certificates():
    """A fresh local root CA and an ES256 signing certificate issued by it (10 years): ``(key, cert, ca)``.

    The end-entity certificate has key usage digitalSignature and EKU
    emailProtection: c2pa-rs refuses a bare self-signed signing certificate.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, LOCAL_ISSUER),
                          x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
                             crl_sign=not sign, encipher_only=False, decipher_only=False)

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=3650)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = name("talkinghead local root CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(sign=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("talkinghead local signer")).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(sign=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert, ca


def _create_local_credential(root: Path) -> None:
    """Write a local root CA and an ES256 signing certificate (:func:`_local_certificates`) into ``root``.

    The files are made in a temporary sibling folder that is renamed to
    ``root``, so concurrent first runs never see a key without its chain.

    Raises:
        ProvenanceError: the folder cannot be written.
    """
    from cryptography.hazmat.primitives import serialization

    key, cert, ca = _local_certificates()
    pem = serialization.Encoding.PEM
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = root.with_name(f".{root.name}.{secrets.token_hex(6)}.partial")
        tmp.mkdir(mode=0o700)
        try:
            key_file = tmp / "signer.key"
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            (tmp / "chain.pem").write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
            (tmp / "README.txt").write_text(
                "Locally generated C2PA signing credential of talkinghead (a root CA and its signing certificate;\n"
                "the CA's key was discarded). Manifests signed with it declare that a file is AI-generated;\n"
                "they do not prove who made it. Delete this folder to make a new credential.\n")
            try:
                tmp.rename(root)
            except OSError:
                if not (root / "chain.pem").is_file():  # not another process winning the race
                    raise
        finally:
            for p in tmp.glob("*") if tmp.exists() else ():
                p.unlink(missing_ok=True)
            if tmp.exists():
                tmp.rmdir()
    except OSError as exc:
        raise ProvenanceError(f"cannot create the local C2PA credential in {root}: {exc.strerror or exc}; "
                              "set XDG_CACHE_HOME to a writable folder, or give --c2pa-key/--c2pa-cert") from None


# --------------------------------------------------------------------- signing
def tool_version() -> str:
    """talkinghead's version (the package's ``__version__``)."""
    import talkinghead

    return talkinghead.__version__


def manifest_definition(options: ProvenanceOptions, title: str) -> dict[str, Any]:
    """The C2PA manifest definition (c2pa-python's JSON manifest format) for one output file.

    Args:
        options: job kind and details.
        title: the output's file name.
    """
    version = tool_version()
    agent = {"name": "talkinghead", "version": version}
    job = {"kind": options.job, "tool": "talkinghead", "version": version, **dict(options.details)}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [{
                "action": "c2pa.created",
                "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                "softwareAgent": agent,
                "description": f"talking-head {options.job} generated by talkinghead {version} from a portrait photo",
                "parameters": {JOB_ASSERTION: {"kind": options.job}},
            }]}},
            {"label": JOB_ASSERTION, "data": job},
        ],
    }


def _sign_stream(credential: Credential, options: ProvenanceOptions, mime: str, source: Any, dest: Any,
                 title: str, sidecar: bool = False) -> bytes:
    import c2pa

    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(credential.alg, credential.chain_pem, credential.key_pem, None))
    with signer:
        builder = c2pa.Builder(manifest_definition(options, title), context=c2pa.Context.from_dict(_SETTINGS))
        if sidecar:
            builder.set_no_embed()
        return builder.sign(signer, mime, source, dest)


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the manifest store of a file without embedding (.mkv, .bmp) lives: ``<stem>.c2pa`` beside it."""
    return Path(path).with_suffix(".c2pa")


@contextlib.contextmanager
def _removed_on_failure(path: Path, target: Path) -> Iterator[None]:
    """Delete ``path`` (a signing temp file of ``target``) if the body raises; C2PA errors become ProvenanceError."""
    import c2pa

    try:
        yield
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, c2pa.C2paError):
            raise ProvenanceError(f"cannot sign {target.name} with C2PA: {_first_line(exc)}") from None
        raise


def sign_output(tmp: Path, target: Path, options: ProvenanceOptions) -> tuple[Path, Path | None]:
    """Sign the finished temporary output ``tmp`` of ``target``.

    Args:
        tmp: the complete, unsigned file (its suffix is the target's).
        target: the final path (its name becomes the manifest title).
        options: job kind, details and credential.

    Returns:
        ``(signed, sidecar)``: ``signed`` is a new temporary file next to
        ``tmp`` holding the signed asset to rename onto ``target``; for .mkv
        and .bmp ``signed`` is ``tmp`` itself and ``sidecar`` a temporary
        manifest store to rename onto :func:`sidecar_path` (else ``None``).
        The caller deletes both on failure.

    Raises:
        ProvenanceError: no credential, or signing failed.
        MediaError: the suffix has no C2PA support.
    """
    suffix = tmp.suffix.lower()
    credential = load_credential(options)
    stem = f".{target.stem}.{secrets.token_hex(6)}.signing"
    if suffix in EMBEDDED_SUFFIXES:
        signed = tmp.with_name(stem + suffix)
        with _removed_on_failure(signed, target):
            with open(tmp, "rb") as src, open(signed, "w+b") as dst:
                _sign_stream(credential, options, EMBEDDED_SUFFIXES[suffix], src, dst, target.name)
        return signed, None
    if suffix in SIDECAR_SUFFIXES:
        store = tmp.with_name(stem + ".c2pa")
        with _removed_on_failure(store, target):
            with open(tmp, "rb") as src:
                data = _sign_stream(credential, options, SIDECAR_SUFFIXES[suffix], src, io.BytesIO(), target.name,
                                    sidecar=True)
            store.write_bytes(data)
        return tmp, store
    raise MediaError(f"cannot mark {target.name} as AI-generated: C2PA has no binding for {suffix} files; "
                     f"use {', '.join(EMBEDDED_SUFFIXES)}")


# ------------------------------------------------------------------- reading
@dataclass(frozen=True)
class ProvenanceReport:
    """What a file's C2PA manifest says (see :func:`read_provenance`).

    Attributes:
        path: the file read.
        sidecar: the sidecar manifest store read, or ``None`` when embedded.
        store: the whole manifest store (c2pa ``Reader.json()``), parsed.
        manifest: the active manifest.
        validation_state: ``"Invalid"``, ``"Valid"`` (signature and hashes
            check, signer not on a trust list) or ``"Trusted"``.
        failures: validation failure codes with explanations.
    """

    path: Path
    sidecar: Path | None
    store: dict[str, Any]
    manifest: dict[str, Any]
    validation_state: str
    failures: tuple[str, ...]

    @property
    def signature(self) -> dict[str, Any]:
        """``signature_info`` of the active manifest (issuer, common_name, alg, ...)."""
        return self.manifest.get("signature_info") or {}

    @property
    def created(self) -> dict[str, Any] | None:
        """The first ``c2pa.created`` action, or ``None``."""
        for assertion in self.manifest.get("assertions", []):
            if assertion.get("label", "").startswith("c2pa.actions"):
                for action in assertion.get("data", {}).get("actions", []):
                    if action.get("action") == "c2pa.created":
                        return action
        return None

    @property
    def job(self) -> dict[str, Any]:
        """talkinghead's ``org.talkinghead.job`` assertion data (empty when absent)."""
        for assertion in self.manifest.get("assertions", []):
            if assertion.get("label") == JOB_ASSERTION:
                return assertion.get("data", {})
        return {}

    @property
    def ai_generated(self) -> bool:
        """Whether the created action declares ``trainedAlgorithmicMedia``."""
        return (self.created or {}).get("digitalSourceType") == TRAINED_ALGORITHMIC_MEDIA

    @property
    def local_credential(self) -> bool:
        """Whether it was signed with a talkinghead locally generated credential."""
        return self.signature.get("issuer") == LOCAL_ISSUER

    def summary(self) -> list[str]:
        """A short human summary, one fact per line."""
        sig, created, job = self.signature, self.created or {}, self.job
        agent = created.get("softwareAgent") or {}
        agent_text = f"{agent.get('name', '?')} {agent.get('version', '')}".strip() if isinstance(agent, dict) \
            else str(agent)
        generators = ", ".join(f"{g.get('name', '?')} {g.get('version', '')}".strip()
                               for g in self.manifest.get("claim_generator_info", [])) or "?"
        source_type = created.get("digitalSourceType", "none")
        if self.ai_generated:
            source_text = "AI-generated (trainedAlgorithmicMedia)"
        else:
            source_text = source_type.rsplit("/", 1)[-1] or "not stated"
        lines = [
            f"file:             {self.path}" + (f" (manifest in sidecar {self.sidecar.name})" if self.sidecar else ""),
            f"signed by:        {sig.get('common_name', '?')} (issuer: {sig.get('issuer', '?')}, {sig.get('alg', '?')})",
            f"claim generator:  {generators}",
            f"action:           {created.get('action', 'no c2pa.created action')}",
            f"source type:      {source_text}",
            f"tool:             {agent_text}",
            f"job:              {job.get('kind', '?')}"
            + "".join(f", {k}={v}" for k, v in job.items() if k not in ("kind", "tool", "version")),
        ]
        untrusted = [f for f in self.failures if f.startswith("signingCredential.untrusted")]
        others = [f for f in self.failures if f not in untrusted]
        if self.validation_state == "Invalid" or others:
            status = f"{self.validation_state.upper()}: " + "; ".join(self.failures)
        else:
            status = f"{self.validation_state.lower()} (signature and content hash match"
            status += "; the signing certificate is on no C2PA trust list)" if untrusted else ")"
        lines.append(f"validation:       {status}")
        if self.local_credential:
            lines.append("note:             locally generated credential: declares, does not prove who made the file")
        return lines


def read_provenance(path: str | os.PathLike[str]) -> ProvenanceReport | None:
    """Read and validate the C2PA manifest of ``path`` (embedded, or the sidecar ``<stem>.c2pa``).

    Returns:
        The report, or ``None`` when the file has no manifest.

    Raises:
        MediaError: ``path`` is missing or not a file, or not a format C2PA reads.
    """
    import c2pa

    p = Path(path)
    if not p.is_file():
        raise MediaError(f"file not found: {p}" if not p.exists() else f"{p} is not a regular file")
    suffix = p.suffix.lower()
    if suffix == ".c2pa":
        raise MediaError(f"{p} is a C2PA sidecar manifest store; give the video or image file next to it")
    sidecar = sidecar_path(p)
    try:
        if suffix in SIDECAR_SUFFIXES or (suffix not in EMBEDDED_SUFFIXES and sidecar.is_file()):
            if not sidecar.is_file():
                return None
            with open(p, "rb") as stream, c2pa.Reader(SIDECAR_SUFFIXES.get(suffix, "application/octet-stream"),
                                                       stream, sidecar.read_bytes()) as reader:
                return _report(p, sidecar, reader.json())
        with open(p, "rb") as stream:
            reader = c2pa.Reader.try_create(EMBEDDED_SUFFIXES.get(suffix, ""), stream)
            if reader is None:
                return None
            with reader:
                return _report(p, None, reader.json())
    except c2pa.C2paError as exc:
        message = _first_line(exc)
        if "JUMBF" in message or "ManifestNotFound" in type(exc).__name__:
            return None
        raise MediaError(f"cannot read a C2PA manifest from {p}: {message}") from None


def _report(path: Path, sidecar: Path | None, text: str) -> ProvenanceReport:
    store = json.loads(text)
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    failures = tuple(f"{s.get('code')}: {s.get('explanation', '')}".rstrip(": ")
                     for s in store.get("validation_status", []) or [])
    return ProvenanceReport(path, sidecar, store, manifest, store.get("validation_state", "Invalid"), failures)
