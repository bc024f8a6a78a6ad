"""Throwaway TLS certificates, made by the real openssl (HTTPS and STARTTLS tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(directory: Path, ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for `ip` and localhost, made by the real openssl."""
    cert, key = directory / f"cert-{ip}.pem", directory / f"key-{ip}.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            f"subjectAltName=DNS:localhost,IP:{ip}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key
