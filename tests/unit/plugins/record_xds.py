"""Record the configuration the test cluster's real istiod pushes to Bookinfo's
proxies, for the unit tests of proxy_config_info (tests/unit/plugins/fixtures/xds/).

Run inside the test cluster's network namespace, with Istio and Bookinfo
installed in NAMESPACE (site.yml --tags istio,bookinfo -e bookinfo_namespace=NAMESPACE):

    hack/testcluster/cluster.sh exec -- .venv/bin/python tests/unit/plugins/record_xds.py NAMESPACE

Each scenario applies real Istio objects, waits for istiod's push, reads one
pod's clusters, listeners and routes over xDS (presenting its node identity)
and writes them gzipped, with the pod's namespace and what the scenario set.
The objects are removed afterwards.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import sys
import time
from pathlib import Path

import trustme
from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / ".collections"))
from ansible_collections.servicemesh.istio.plugins.module_utils import _xds  # noqa: E402

OUT = Path(__file__).resolve().parent / "fixtures" / "xds"
HOST = "bookinfo.record.smistio.test"
CREDENTIAL = "record-tls"


def main(namespace: str) -> None:
    api = config.new_client_from_config(config_file=os.environ["SMI_KUBECONFIG"])
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    assert _xds.import_xds() is None
    istiod = core.read_namespaced_service("istiod", "istio-system").spec.cluster_ip + ":15010"
    OUT.mkdir(parents=True, exist_ok=True)

    def pod(namespace_, selector):
        item = core.list_namespaced_pod(namespace_, label_selector=selector).items[0]
        return api.sanitize_for_serialization(item)

    def objects(kind_plural, body, group="networking.istio.io", ns=namespace):
        custom.create_namespaced_custom_object(group, "v1", ns, kind_plural, body)
        return (group, ns, kind_plural, body["metadata"]["name"])

    def remove(refs):
        for group, ns, plural, name in refs:
            custom.delete_namespaced_custom_object(group, "v1", ns, plural, name)

    def record(name, target, extra=None):
        time.sleep(1.5)  # istiod debounces pushes (about 100 ms) and then computes
        node_id, metadata = _xds.node_identity(target, "cluster.local", "")
        data = {"namespace": target["metadata"]["namespace"], "node_id": node_id,
                "config": _xds.fetch_proxy_config(istiod, node_id, metadata, 10)}
        data.update(extra or {})
        with gzip.open(OUT / f"{name}.json.gz", "wt") as handle:
            json.dump(data, handle, sort_keys=True)
        print(f"{name}: {sum(len(v) for v in data['config'].values())} resources")

    reviews = pod(namespace, "app=reviews,version=v1")
    productpage = pod(namespace, "app=productpage")
    record("reviews-permissive", reviews)
    pa = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default"}}
    refs = [objects("peerauthentications", dict(pa, spec={"mtls": {"mode": "STRICT"}}), "security.istio.io")]
    record("reviews-strict", reviews)
    refs.append(objects("peerauthentications", {
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "reviews-exception"},
        "spec": {"selector": {"matchLabels": {"app": "reviews"}}, "mtls": {"mode": "STRICT"},
                 "portLevelMtls": {"9080": {"mode": "PERMISSIVE"}}}}, "security.istio.io"))
    record("reviews-port-exception", reviews)
    remove(refs)
    refs = [objects("peerauthentications", dict(pa, spec={"mtls": {"mode": "DISABLE"}}), "security.istio.io"),
            objects("destinationrules", {
                "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "ratings"},
                "spec": {"host": "ratings", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}})]
    record("reviews-disable", reviews)
    record("reviews-ratings-disable", reviews)
    remove(refs)
    refs = [objects("destinationrules", {
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "reviews"},
        "spec": {"host": "reviews", "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2", "v3")]}})]
    split = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "reviews"},
             "spec": {"hosts": ["reviews"], "http": [{"route": [
                 {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                 {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20}]}]}}
    refs.append(objects("virtualservices", split))
    record("productpage-split", productpage)
    remove(refs[1:])
    split["spec"]["http"][0]["route"][1]["destination"]["subset"] = "v9"
    refs[1:] = [objects("virtualservices", split)]
    record("productpage-missing-subset", productpage)
    remove(refs)

    issued = trustme.CA().issue_cert(HOST)
    core.create_namespaced_secret("istio-system", {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": CREDENTIAL},
        "data": {"tls.crt": base64.b64encode(issued.cert_chain_pems[0].bytes()).decode(),
                 "tls.key": base64.b64encode(issued.private_key_pem.bytes()).decode()}})
    gateway = objects("gateways", {
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "record-gateway"},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [HOST]},
            {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": [HOST],
             "tls": {"mode": "SIMPLE", "credentialName": CREDENTIAL}}]}})
    route = objects("virtualservices", {
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "record-gateway"},
        "spec": {"hosts": [HOST], "gateways": ["record-gateway"], "http": [
            {"match": [{"uri": {"prefix": "/productpage"}}],
             "route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]}]}})
    refs = [gateway, route]
    record("gateway", pod("istio-system", "istio=ingressgateway"), {"host": HOST, "credential_name": CREDENTIAL, "app_namespace": namespace})
    remove(refs)
    core.delete_namespaced_secret(CREDENTIAL, "istio-system")


if __name__ == "__main__":
    main(sys.argv[1])
