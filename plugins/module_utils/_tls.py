# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE module_utils: used only by the modules of servicemesh.istio. It is not
# part of the collection's public API and may change without notice.
"""X.509 and TLS helpers for servicemesh.istio.wait_for_certificate: SAN
matching (RFC 6125 wildcards), certificate facts, chain and key checks, and
the TLS handshake that fetches the certificate a server really serves.

Private keys are only compared with certificates; nothing derived from them
other than "matches / does not match" leaves these helpers.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import ssl
import traceback

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None


ISSUER_ATTRIBUTES = {
    'common_name': 'CN',
    'organization': 'O',
    'organizational_unit': 'OU',
    'country': 'C',
}


class CertificateError(Exception):
    """Data that is not a usable certificate or key."""


# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------

def normalize_dns_name(name):
    """Lower-case ASCII (IDNA) form without a trailing dot; ``*`` labels kept."""
    name = name.strip().rstrip('.').lower()
    labels = []
    for label in name.split('.'):
        try:
            label.encode('ascii')
        except UnicodeEncodeError:
            label = label.encode('idna').decode('ascii')
        labels.append(label)
    return '.'.join(labels)


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def san_covers(san, requested):
    """Whether one SAN entry covers one requested name (RFC 6125, section 6.4.3).

    - names compare case-insensitively, ignoring a trailing dot, IDN as A-labels;
    - a wildcard SAN ``*.example.com`` covers exactly one more label:
      ``a.example.com``, but not ``example.com`` nor ``a.b.example.com``;
    - only a whole left-most ``*`` label is a wildcard: ``f*.example.com`` and
      ``*.*.example.com`` match nothing but themselves, and a wildcard needs at
      least two labels after it (``*.com`` covers nothing);
    - a requested wildcard (cert-manager ``dnsNames: ['*.example.com']``) is
      covered only by the same wildcard;
    - IP addresses compare as addresses and are never covered by a wildcard.
    """
    san_n = normalize_dns_name(san)
    req_n = normalize_dns_name(requested)
    if not san_n or not req_n:
        return False
    if _is_ip(san_n) or _is_ip(req_n):
        try:
            return ipaddress.ip_address(san_n) == ipaddress.ip_address(req_n)
        except ValueError:
            return False
    if san_n == req_n:
        return True
    if req_n.startswith('*'):
        return False
    if not san_n.startswith('*.'):
        return False
    suffix = san_n[2:]
    if '*' in suffix or suffix.count('.') < 1:
        return False
    head, sep, rest = req_n.partition('.')
    return bool(sep) and bool(head) and rest == suffix


def uncovered_names(sans, requested):
    """The requested names that no SAN covers."""
    return [name for name in requested if not any(san_covers(san, name) for san in sans)]


# --------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------

def load_chain(pem):
    """Parse a PEM chain (bytes or str) into a list of certificates, leaf first."""
    if isinstance(pem, str):
        pem = pem.encode('utf-8')
    if b'-----BEGIN CERTIFICATE-----' not in pem:
        raise CertificateError('no PEM certificate found')
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CertificateError('the PEM certificate chain cannot be parsed: %s' % exc)


def load_private_key(pem):
    """Parse a PEM private key. The error message never quotes the key."""
    if isinstance(pem, str):
        pem = pem.encode('utf-8')
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise CertificateError('the private key cannot be parsed (not an unencrypted PEM private key)')
    except Exception:  # pylint: disable=broad-except
        raise CertificateError('the private key cannot be parsed')


def public_key_bytes(key):
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches_certificate(key, cert):
    return public_key_bytes(key.public_key()) == public_key_bytes(cert.public_key())


def fingerprint(cert):
    """SHA-256 fingerprint, upper-case hex pairs separated by colons."""
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return ':'.join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _not_before(cert):
    return cert.not_valid_before_utc


def _not_after(cert):
    return cert.not_valid_after_utc


def subject_alt_names(cert):
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = list(ext.get_values_for_type(x509.DNSName))
    names.extend(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))
    return names


def _iso(value):
    return value.strftime('%Y-%m-%dT%H:%M:%SZ')


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def days_remaining(cert, now=None):
    now = now or utcnow()
    return round((_not_after(cert) - now).total_seconds() / 86400.0, 2)


def certificate_facts(cert, now=None):
    """The facts the module returns about a certificate (no key material)."""
    return {
        'subject': cert.subject.rfc4514_string(),
        'sans': subject_alt_names(cert),
        'issuer': cert.issuer.rfc4514_string(),
        'serial': format(cert.serial_number, 'X'),
        'not_before': _iso(_not_before(cert)),
        'not_after': _iso(_not_after(cert)),
        'days_remaining': days_remaining(cert, now),
        'fingerprint': fingerprint(cert),
    }


def validity_problems(cert, min_days_remaining=0, now=None):
    now = now or utcnow()
    problems = []
    if now < _not_before(cert):
        problems.append('is not valid before %s' % _iso(_not_before(cert)))
    if now >= _not_after(cert):
        problems.append('expired on %s' % _iso(_not_after(cert)))
    else:
        left = days_remaining(cert, now)
        if left < min_days_remaining:
            problems.append('has %.2f days left, less than min_days_remaining %s' % (left, min_days_remaining))
    return problems


def chain_problems(chain):
    """Each certificate must be signed by the next one in the chain."""
    problems = []
    for child, parent in zip(chain, chain[1:]):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            problems.append('chain is out of order or broken: "%s" is not issued by the next certificate "%s" (%s)' % (
                child.subject.rfc4514_string(), parent.subject.rfc4514_string(), exc or 'bad signature'))
    return problems


def issuer_problems(cert, expected):
    """``expected``: {common_name|organization|organizational_unit|country: regex (full match)}."""
    problems = []
    for option, short in sorted(ISSUER_ATTRIBUTES.items()):
        pattern = (expected or {}).get(option)
        if pattern is None:
            continue
        oid = {
            'common_name': NameOID.COMMON_NAME,
            'organization': NameOID.ORGANIZATION_NAME,
            'organizational_unit': NameOID.ORGANIZATIONAL_UNIT_NAME,
            'country': NameOID.COUNTRY_NAME,
        }[option]
        values = [attr.value for attr in cert.issuer.get_attributes_for_oid(oid)]
        if not any(re.fullmatch(pattern, value) for value in values):
            problems.append('issuer %s is %s, expected %s' % (
                short, ' / '.join(repr(v) for v in values) if values else 'absent', repr(pattern)))
    return problems


# --------------------------------------------------------------------------
# TLS handshake
# --------------------------------------------------------------------------

class HandshakeResult:
    def __init__(self, der=None, verified=False, error=None, error_kind=None, tls_version=None):
        self.der = der
        self.verified = verified
        self.error = error
        self.error_kind = error_kind  # None, 'connect', 'verify', 'tls'
        self.tls_version = tls_version


def _handshake(host, port, address, context, timeout):
    with socket.create_connection((address or host, port), timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            return tls.getpeercert(binary_form=True), tls.version()


def fetch_served_certificate(host, port, address=None, ca_path=None, timeout=5.0):
    """TLS handshake with SNI ``host`` to ``address`` (or ``host``) and ``port``.

    First a verifying handshake (trust store: ``ca_path`` when given, the
    system's otherwise; host name checked). When that fails on verification,
    a second, non-verifying handshake fetches the certificate for the report.
    """
    if ca_path:
        context = ssl.create_default_context(cafile=ca_path)
    else:
        context = ssl.create_default_context()
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        der, version = _handshake(host, port, address, context, timeout)
        return HandshakeResult(der=der, verified=True, tls_version=version)
    except ssl.SSLCertVerificationError as exc:
        error = 'certificate verify failed: %s' % (exc.verify_message or exc.reason or exc)
        kind = 'verify'
    except ssl.SSLError as exc:
        return HandshakeResult(error='TLS handshake failed: %s' % (exc.reason or exc), error_kind='tls')
    except socket.timeout:
        return HandshakeResult(error='no TLS answer within %gs' % timeout, error_kind='connect')
    except OSError as exc:
        return HandshakeResult(error='cannot connect: %s' % (exc.strerror or exc), error_kind='connect')
    insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    try:
        der, version = _handshake(host, port, address, insecure, timeout)
    except (OSError, ssl.SSLError):
        der, version = None, None
    return HandshakeResult(der=der, verified=False, error=error, error_kind=kind, tls_version=version)


def load_der(der):
    return x509.load_der_x509_certificate(der)
