"""A self-signed TLS certificate for 127.0.0.1, so a client can reach a local emulator under an ``https://`` URL (not a test module).

ccxt reads some Binance error codes by the request's URL (:meth:`ccxt.binance.get_exceptions_by_url`: a spot
``-2021`` is its ``BadResponse`` on ``https://api.binance.com``, ``https://testnet.binance.vision`` or
``https://demo-api...``); an emulator at ``http://127.0.0.1`` never meets that mapping. :func:`venue_url`
names the emulator's TLS port by a URL starting ``https://demo-api`` (Binance's demo hosts) through the URL's
user part, which the TLS connection ignores.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(directory: Path) -> tuple[ssl.SSLContext, str]:
    """A server TLS context for 127.0.0.1 and the path of the certificate a client trusts (written in ``directory``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "emulator.pem", directory / "emulator.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    return server, str(cert_path)


def venue_url(host: str, port: int) -> str:
    """``https://<host>@127.0.0.1:<port>``: the emulator's TLS port under a URL ccxt takes for Binance's ``host``
    (``demo-api``: spot, ``demo-fapi``: USD-M)."""
    return f"https://{host}@127.0.0.1:{port}"
