#!/usr/bin/python
# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: wait_for_certificate
short_description: Wait until a TLS certificate is issued, stored and really served
version_added: 0.1.0
description:
  - Waits until a certificate is really ready, checking up to three layers; each layer is optional, at least one must
    be selected.
  - "B(resource) (selected by O(certificate)): the cert-manager C(Certificate) resource has a C(Ready=True) condition
    observed for its current generation and a C(status.notAfter). If not, the message gives its conditions and the
    state of the latest C(CertificateRequest), ACME C(Order) and C(Challenge) where present."
  - "B(secret) (selected by O(secret)): the TLS Secret exists and holds a certificate chain (C(tls.crt)) and a private
    key (C(tls.key)) that match; each certificate of the chain is issued by the next; the leaf covers every requested
    DNS name (wildcards per RFC 6125), is within its validity period with at least O(min_days_remaining) days left,
    and its issuer matches O(issuer)."
  - "B(served) (selected by O(served)): a TLS handshake to O(served.host):O(served.port), optionally to
    O(served.address) with SNI O(served.host) so that it works before DNS has propagated, verified against the system
    trust store or O(served.ca_path), with the host name checked; its leaf must have O(min_days_remaining) days left,
    match O(issuer), and, when the secret layer is selected, have the same SHA-256 fingerprint as the Secret's leaf,
    so that a stale or default certificate is caught."
  - Polls with a capped exponential back-off until O(timeout) seconds have passed on a monotonic clock.
  - The Secret's private key is only compared with the certificate; it never appears in the output.
  - The module only reads; it never reports a change.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - servicemesh.istio.wait
  - kubernetes.core.k8s_auth_options
  - servicemesh.istio.connection
author:
  - servicemesh.istio contributors (@servicemesh-istio)
options:
  certificate:
    description:
      - Name of the cert-manager C(Certificate) resource (C(cert-manager.io/v1)) to check. Selects the resource layer.
      - When O(secret) is also given, it must be the Certificate's C(spec.secretName).
    type: str
  secret:
    description:
      - Name of the TLS Secret (keys C(tls.crt) and C(tls.key)) to check. Selects the secret layer.
    type: str
  namespace:
    description:
      - Namespace of O(certificate) and O(secret). Required with either of them.
    type: str
  served:
    description:
      - Where the certificate is served. Selects the served layer.
    type: dict
    suboptions:
      host:
        description:
          - Host name sent as SNI and checked against the served certificate, for example V(istio.example.com).
        type: str
        required: true
      port:
        description:
          - TCP port.
        type: int
        default: 443
      address:
        description:
          - IP address (or name) to connect to instead of O(served.host), for example the ingress gateway's load
            balancer IP before the DNS record exists. SNI and the host name check still use O(served.host).
        type: str
      ca_path:
        description:
          - PEM file with the CA certificates to trust instead of the system trust store.
        type: path
      connect_timeout:
        description:
          - Timeout of one TCP connection and TLS handshake, in seconds.
        type: float
        default: 5
  dns_names:
    description:
      - DNS names the leaf certificate must cover (wildcard names allowed, for example V(*.example.com)).
      - Default is the Certificate's C(spec.dnsNames) when O(certificate) is given, else O(served.host) when
        O(served) is given, else no name check.
    type: list
    elements: str
  min_days_remaining:
    description:
      - Least number of days the leaf certificate must still be valid.
    type: int
    default: 0
  issuer:
    description:
      - Expected issuer of the leaf certificate, for example O(issuer.organization=Let's Encrypt) to accept Let's
        Encrypt production and not its staging environment, whose issuer organization has a (STAGING) prefix.
      - Each given attribute is a Python regular expression that must match the whole attribute value.
    type: dict
    suboptions:
      common_name:
        description:
          - Regular expression for the issuer's common name (CN), for example V(R1[0-4]|E[5-9]).
        type: str
      organization:
        description:
          - Regular expression for the issuer's organization (O).
        type: str
      organizational_unit:
        description:
          - Regular expression for the issuer's organizational unit (OU).
        type: str
      country:
        description:
          - Regular expression for the issuer's country (C).
        type: str
requirements:
  - cryptography >= 42.0.0
  - kubernetes >= 24.2.0 (for the resource and secret layers)
notes:
  - Authentication and authorization errors of the Kubernetes API (HTTP 401 and 403) end the wait at once, as do a
    Certificate whose C(spec.secretName) is not O(secret) and Kubernetes connection options that cannot be loaded.
seealso:
  - module: servicemesh.istio.wait_for_dns
  - module: community.crypto.get_certificate
"""

EXAMPLES = r"""
- name: Wait until the gateway certificate is issued, stored and served
  servicemesh.istio.wait_for_certificate:
    certificate: istio-gateway
    secret: istio-gateway-tls
    namespace: istio-system
    served:
      host: istio.example.com
      address: "{{ ingress_ip }}"
    min_days_remaining: 30
    issuer:
      organization: "Let's Encrypt"
    timeout: 900

- name: Only check that cert-manager reports the Certificate ready, with a given kubeconfig
  servicemesh.istio.wait_for_certificate:
    certificate: istio-gateway
    namespace: istio-system
    kubeconfig: ~/.kube/config
    context: kind-istio
  register: cert

- name: Check a served certificate against a private CA, without Kubernetes
  servicemesh.istio.wait_for_certificate:
    served:
      host: grafana.internal.example
      port: 8443
      ca_path: /etc/pki/internal-ca.pem
    dns_names:
      - grafana.internal.example
    timeout: 60
"""

RETURN = r"""
layers_checked:
  description: The layers that were selected, among V(resource), V(secret) and V(served).
  returned: always
  type: list
  elements: str
  sample: [resource, secret, served]
layers_passed:
  description: The layers that passed in the last attempt.
  returned: always
  type: list
  elements: str
  sample: [resource, secret, served]
layers:
  description:
    - Per selected layer, what was found in the last attempt. Each has C(passed) (bool) and C(message) (str).
    - C(resource) also has C(ready), C(not_after), C(secret_name), C(dns_names), C(conditions), C(issuance) and
      C(notes).
    - C(secret) also has C(problems), C(chain_length) and C(key_matches).
    - C(served) also has C(verified), C(verify_error), C(tls_version), C(fingerprint_matches) and C(certificate)
      (the served leaf's subject, sans, issuer, serial, not_before, not_after, days_remaining and fingerprint).
  returned: always
  type: dict
  sample:
    resource:
      passed: true
      message: Certificate istio-system/istio-gateway is Ready, notAfter 2026-03-01T00:00:00Z
dns_names:
  description: The DNS names the leaf was checked against.
  returned: always
  type: list
  elements: str
  sample: [istio.example.com]
subject:
  description: Subject of the leaf certificate (from the Secret if checked, else the served one).
  returned: when a certificate was read
  type: str
  sample: CN=istio.example.com
sans:
  description: Subject alternative names (DNS names and IP addresses) of the leaf certificate.
  returned: when a certificate was read
  type: list
  elements: str
  sample: [istio.example.com]
issuer:
  description: Issuer of the leaf certificate, RFC 4514.
  returned: when a certificate was read
  type: str
  sample: CN=R11,O=Let's Encrypt,C=US
serial:
  description: Serial number, upper-case hexadecimal.
  returned: when a certificate was read
  type: str
  sample: 3A0F5C1B2D
not_before:
  description: Start of validity, UTC, ISO 8601.
  returned: when a certificate was read
  type: str
  sample: "2026-01-01T00:00:00Z"
not_after:
  description: End of validity, UTC, ISO 8601 (from the Certificate's status when only the resource layer is checked).
  returned: when known
  type: str
  sample: "2026-04-01T00:00:00Z"
days_remaining:
  description: Days until RV(not_after), with two decimals.
  returned: when a certificate was read
  type: float
  sample: 89.5
fingerprint:
  description: SHA-256 fingerprint of the leaf certificate, upper-case hex pairs separated by colons.
  returned: when a certificate was read
  type: str
  sample: "3B:9A:...:01"
elapsed:
  description: Seconds spent waiting, on a monotonic clock.
  returned: always
  type: float
  sample: 12.3
attempts:
  description: How many times the layers were checked.
  returned: always
  type: int
  sample: 4
"""

import re
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.servicemesh.istio.plugins.module_utils import _k8s, _tls
from ansible_collections.servicemesh.istio.plugins.module_utils._wait import WAIT_ARGUMENT_SPEC, Backoff, wait_until


class Fatal(Exception):
    """A problem that waiting will not solve."""


class CertificateWaiter:
    def __init__(self, module):
        self.module = module
        params = module.params
        self.certificate = params['certificate']
        self.secret = params['secret']
        self.namespace = params['namespace']
        self.served = params['served']
        self.min_days = params['min_days_remaining']
        self.issuer = dict((k, v) for k, v in (params['issuer'] or {}).items() if v is not None)
        self.layers = [name for name, on in (('resource', self.certificate), ('secret', self.secret),
                                             ('served', self.served)) if on]
        if not self.layers:
            module.fail_json(msg='no layer selected: give certificate (the cert-manager Certificate resource), '
                                 'secret (the TLS Secret) and/or served (where the certificate is served)')
        for option in ('timeout', 'initial_sleep', 'max_sleep'):
            if params[option] < 0 or (option != 'timeout' and params[option] == 0):
                module.fail_json(msg='%s must be positive, got %r' % (option, params[option]))
        if params['backoff_factor'] < 1:
            module.fail_json(msg='backoff_factor (%r) must be at least 1' % (params['backoff_factor'],))
        if params['max_sleep'] < params['initial_sleep']:
            module.fail_json(msg='max_sleep (%r) must not be smaller than initial_sleep (%r)' % (
                params['max_sleep'], params['initial_sleep']))
        if self.min_days < 0:
            module.fail_json(msg='min_days_remaining must not be negative')
        if self.served is not None:
            if not self.served['host'] or not self.served['host'].strip():
                module.fail_json(msg='served.host must not be empty')
            if not 0 < self.served['port'] < 65536:
                module.fail_json(msg='served.port %r is out of range 1-65535' % self.served['port'])
            if self.served['connect_timeout'] <= 0:
                module.fail_json(msg='served.connect_timeout must be positive')
        for option, pattern in self.issuer.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                module.fail_json(msg='issuer.%s is not a valid regular expression: %s' % (option, exc))
        self.dns_names = [n for n in (params['dns_names'] or []) if n]
        self.timeout = params['timeout']
        self.backoff = Backoff(params['initial_sleep'], params['backoff_factor'], params['max_sleep'])
        self.reader = None
        if self.certificate or self.secret:
            import_error = _k8s.import_kubernetes()
            if import_error is not None:
                module.fail_json(msg=missing_required_lib('kubernetes'), exception=import_error)
            try:
                client = _k8s.build_api_client(params)
            except _k8s.KubeConfigError as exc:
                module.fail_json(msg=str(exc))
            self.reader = _k8s.CertManagerReader(client)
        self.deadline = None

    # ------------------------------------------------------------------
    def _request_timeout(self):
        if self.deadline is None:
            return 10
        return max(0.5, min(10.0, self.deadline - time.monotonic()))

    def _protect(self, secret_bytes):
        """Make sure key material can never show up in the module's output."""
        text = secret_bytes.decode('utf-8', 'replace')
        if text.strip():
            self.module.no_log_values.add(text)
            self.module.no_log_values.add(text.strip())
        for line in text.splitlines():
            if len(line.strip()) >= 16 and not line.startswith('-----'):
                self.module.no_log_values.add(line.strip())

    def check_resource(self):
        ref = '%s/%s' % (self.namespace, self.certificate)
        layer = {'passed': False, 'ready': False, 'not_after': None, 'secret_name': None, 'dns_names': [],
                 'conditions': [], 'issuance': [], 'notes': []}
        self.reader.timeout = self._request_timeout()
        cert = self.reader.certificate(self.namespace, self.certificate)
        if cert is None:
            layer['message'] = 'Certificate %s not found' % ref
            return layer
        spec = cert.get('spec') or {}
        status = cert.get('status') or {}
        layer['secret_name'] = spec.get('secretName')
        layer['dns_names'] = list(spec.get('dnsNames') or [])
        layer['not_after'] = status.get('notAfter')
        layer['conditions'] = [_k8s.describe_condition(c) for c in status.get('conditions') or []]
        if self.secret and layer['secret_name'] and layer['secret_name'] != self.secret:
            raise Fatal('Certificate %s stores its certificate in Secret %s, not in %s' % (
                ref, layer['secret_name'], self.secret))
        ready, reasons, notes = _k8s.certificate_readiness(cert)
        layer['notes'] = notes
        if ready:
            layer['ready'] = True
            layer['passed'] = True
            layer['message'] = 'Certificate %s is Ready, notAfter %s' % (ref, layer['not_after'])
            return layer
        issuance = []
        try:
            issuance = _k8s.issuance_details(cert, self.reader.certificate_requests(self.namespace),
                                             self.reader.orders(self.namespace), self.reader.challenges(self.namespace))
        except _k8s.ApiException as exc:
            if _k8s.is_fatal_api_error(exc):
                raise
            issuance = ['issuance details unavailable: %s' % _k8s.api_error_text(exc)]
        layer['issuance'] = issuance
        layer['message'] = 'Certificate %s is not ready: %s' % (ref, '; '.join(reasons + notes + issuance))
        return layer

    def check_secret(self, requested):
        ref = '%s/%s' % (self.namespace, self.secret)
        layer = {'passed': False, 'problems': [], 'chain_length': 0, 'key_matches': False}
        self.reader.timeout = self._request_timeout()
        found = self.reader.secret_data(self.namespace, self.secret)
        if found is None:
            layer['message'] = 'Secret %s not found' % ref
            return layer, None
        secret_type, data = found
        key_pem = data.get('tls.key') or b''
        if key_pem:
            self._protect(key_pem)
        problems = layer['problems']
        if secret_type != 'kubernetes.io/tls':
            problems.append('type is %s, not kubernetes.io/tls' % secret_type)
        cert_pem = data.get('tls.crt') or b''
        leaf = None
        if not cert_pem:
            problems.append('it has no tls.crt')
        else:
            try:
                chain = _tls.load_chain(cert_pem)
            except _tls.CertificateError as exc:
                problems.append('tls.crt: %s' % exc)
                chain = []
            layer['chain_length'] = len(chain)
            if chain:
                leaf = chain[0]
                problems.extend(_tls.chain_problems(chain))
        if not key_pem:
            problems.append('it has no tls.key')
        elif leaf is not None:
            try:
                key = _tls.load_private_key(key_pem)
            except _tls.CertificateError as exc:
                problems.append('tls.key: %s' % exc)
            else:
                layer['key_matches'] = _tls.key_matches_certificate(key, leaf)
                if not layer['key_matches']:
                    problems.append('the private key in tls.key does not match the leaf certificate')
                del key
        if leaf is not None:
            missing = _tls.uncovered_names(_tls.subject_alt_names(leaf), requested)
            if missing:
                problems.append('the leaf does not cover %s (SANs: %s)' % (
                    ', '.join(missing), ', '.join(_tls.subject_alt_names(leaf)) or 'none'))
            problems.extend('the leaf %s' % p for p in _tls.validity_problems(leaf, self.min_days))
            problems.extend(_tls.issuer_problems(leaf, self.issuer))
        if problems:
            layer['message'] = 'Secret %s: %s' % (ref, '; '.join(problems))
        else:
            layer['passed'] = True
            layer['message'] = 'Secret %s holds a valid certificate chain and matching key' % ref
        return layer, leaf

    def check_served(self, secret_leaf):
        host = self.served['host'].strip()
        port = self.served['port']
        address = self.served['address']
        where = '%s:%d%s' % (host, port, (' via %s' % address) if address else '')
        layer = {'passed': False, 'verified': False, 'verify_error': None, 'tls_version': None,
                 'fingerprint_matches': None, 'certificate': None}
        timeout = self.served['connect_timeout']
        if self.deadline is not None:
            timeout = max(0.5, min(timeout, self.deadline - time.monotonic()))
        result = _tls.fetch_served_certificate(host, port, address, self.served['ca_path'], timeout)
        layer['verified'] = result.verified
        layer['verify_error'] = result.error
        layer['tls_version'] = result.tls_version
        if result.der is None:
            layer['message'] = '%s: %s' % (where, result.error)
            return layer, None
        served = _tls.load_der(result.der)
        layer['certificate'] = _tls.certificate_facts(served)
        problems = []
        if not result.verified:
            problems.append(result.error)
        problems.extend('the served certificate %s' % p for p in _tls.validity_problems(served, self.min_days))
        problems.extend(_tls.issuer_problems(served, self.issuer))
        if secret_leaf is not None:
            secret_fp = _tls.fingerprint(secret_leaf)
            served_fp = _tls.fingerprint(served)
            layer['fingerprint_matches'] = secret_fp == served_fp
            if secret_fp != served_fp:
                problems.append('the served certificate (serial %s, fingerprint %s) is not the one in the Secret '
                                '(serial %s, fingerprint %s): a stale or default certificate is served' % (
                                    format(served.serial_number, 'X'), served_fp,
                                    format(secret_leaf.serial_number, 'X'), secret_fp))
        if problems:
            layer['message'] = '%s: %s' % (where, '; '.join(problems))
        else:
            layer['passed'] = True
            layer['message'] = '%s serves a valid certificate%s' % (
                where, ' identical to the Secret\'s' if secret_leaf is not None else '')
        return layer, served

    # ------------------------------------------------------------------
    def attempt(self, remaining):
        self.deadline = None if remaining is None else time.monotonic() + max(remaining, 0.5)
        state = {'layers': {}, 'leaf': None, 'served_leaf': None, 'dns_names': list(self.dns_names),
                 'fatal': None}
        try:
            if self.certificate:
                layer = self.check_resource()
                state['layers']['resource'] = layer
                if not self.dns_names and layer['dns_names']:
                    state['dns_names'] = layer['dns_names']
            if not state['dns_names'] and self.served:
                state['dns_names'] = [self.served['host'].strip()]
            if self.secret:
                layer, leaf = self.check_secret(state['dns_names'])
                state['layers']['secret'] = layer
                state['leaf'] = leaf
            if self.served:
                layer, served = self.check_served(state['leaf'] if self.secret else None)
                state['layers']['served'] = layer
                state['served_leaf'] = served
        except Fatal as exc:
            state['fatal'] = str(exc)
            return 'fatal', state
        except _k8s.ApiException as exc:
            if _k8s.is_fatal_api_error(exc):
                state['fatal'] = 'Kubernetes API: %s' % _k8s.api_error_text(exc)
                return 'fatal', state
            state['api_error'] = 'Kubernetes API: %s' % _k8s.api_error_text(exc)
            return 'retry', state
        except Exception as exc:  # pylint: disable=broad-except
            # Connection errors of the Kubernetes client (urllib3) and the like: retry.
            if self.reader is None or 'urllib3' not in type(exc).__module__:
                raise
            state['api_error'] = 'Kubernetes API unreachable: %s' % _k8s.api_error_text(exc)
            return 'retry', state
        if all(state['layers'][name]['passed'] for name in self.layers):
            return 'ok', state
        return 'retry', state

    def run(self):
        outcome = wait_until(self.attempt, self.timeout, self.backoff)
        state = outcome.result
        layers = state['layers']
        result = dict(
            changed=False,
            layers_checked=self.layers,
            layers_passed=[name for name in self.layers if layers.get(name, {}).get('passed')],
            layers=layers,
            dns_names=state['dns_names'],
            elapsed=round(outcome.elapsed, 3),
            attempts=outcome.attempts,
        )
        leaf = state['leaf'] or state['served_leaf']
        if leaf is not None:
            result.update(_tls.certificate_facts(leaf))
        elif layers.get('resource', {}).get('not_after'):
            result['not_after'] = layers['resource']['not_after']
        if outcome.success:
            self.module.exit_json(**result)
        failing = ['%s: %s' % (name, layers[name]['message']) for name in self.layers
                   if name in layers and not layers[name]['passed']]
        if state.get('api_error'):
            failing.append(state['api_error'])
        passed = (' (passed: %s)' % ', '.join(result['layers_passed'])) if result['layers_passed'] else ''
        if outcome.aborted:
            msg = 'Failed at once after %.1fs: %s' % (outcome.elapsed, state['fatal'])
        else:
            msg = 'Timed out after %.1fs (%d attempts) waiting for the certificate%s: %s' % (
                outcome.elapsed, outcome.attempts, passed, '; '.join(failing))
        self.module.fail_json(msg=msg, **result)


def main():
    argument_spec = dict(
        certificate=dict(type='str'),
        secret=dict(type='str', no_log=False),
        namespace=dict(type='str'),
        served=dict(type='dict', options=dict(
            host=dict(type='str', required=True),
            port=dict(type='int', default=443),
            address=dict(type='str'),
            ca_path=dict(type='path'),
            connect_timeout=dict(type='float', default=5),
        )),
        dns_names=dict(type='list', elements='str'),
        min_days_remaining=dict(type='int', default=0),
        issuer=dict(type='dict', options=dict(
            common_name=dict(type='str'),
            organization=dict(type='str'),
            organizational_unit=dict(type='str'),
            country=dict(type='str'),
        )),
    )
    argument_spec.update(WAIT_ARGUMENT_SPEC)
    argument_spec.update(_k8s.AUTH_ARG_SPEC)
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_by={'certificate': 'namespace', 'secret': 'namespace'},
        supports_check_mode=True,
    )
    if not _tls.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=_tls.CRYPTOGRAPHY_IMPORT_ERROR)
    CertificateWaiter(module).run()


if __name__ == '__main__':
    main()
