"""Stand-ins for Istio's Kiali, Grafana and Jaeger addons on the local test cluster.

Part of the local test cluster. No container runs here, so these programs
cannot; hack/testcluster/workload_runner.py runs this server for their
Deployments instead, as the kubelet would run the container: with the
container's env (secretKeyRef resolved from the real Secret), the ConfigMap
and Secret volumes written under --root at their mount paths, the Kubernetes
identity of the Deployment's ServiceAccount (KUBECONFIG), on the Service's
address. Every answer is derived from that, never from a value a test wrote:

- kiali: ``/kiali-configuration/config.yaml`` (``auth.strategy``,
  ``server.web_root``, ``login_token.signing_key``; a ``secret:<name>:<key>``
  key is read from ``/kiali-override-secrets/login-token-signing-key/``, and
  like Kiali the stand-in refuses to start with the token strategy and no key
  or upstream's ``CHANGEME`` one). ``/kiali/healthz``; ``/kiali/api/auth/info``
  reports the strategy; ``POST /kiali/api/authenticate`` (form ``token``)
  checks the token against the API server (as Kiali does, by using it) and
  sets a session cookie signed with the key; ``/kiali/api/namespaces`` (401
  without that cookie unless anonymous) and ``/kiali/api/namespaces/graph``
  (versionedApp) needs that cookie (unless anonymous) and answers nodes from
  the namespace's Deployments (labels app/version, read with the user's
  token) and edges from ``istio_requests_total`` in the Prometheus of Kiali's
  ``external_services.prometheus.url`` (the real one of the test cluster;
  with no Envoy here it has no such series, so no edges).
- grafana: the env (``GF_AUTH_ANONYMOUS_ENABLED``, ``GF_SECURITY_ADMIN_USER``,
  ``GF_SECURITY_ADMIN_PASSWORD``) over ``/etc/grafana/grafana.ini``
  (``[auth.anonymous] enabled``, ``[security]``), as Grafana reads them;
  dashboards from the provisioning file's providers' paths.
  ``/api/health``; ``POST /login`` (JSON user/password) sets a session cookie;
  ``/api/search`` needs it unless anonymous access is on, and ``/`` sends a
  visitor without it to ``/login`` (302).
- jaeger: ``/jaeger-configuration/config.yaml``'s
  ``extensions.jaeger_query.base_path``; ``<base>/api/services`` (no login:
  Jaeger has none) and ``/status`` on the health port.

Usage: addon_standin.py --tool kiali|grafana|jaeger --root DIR --listen ADDR --namespace NS --port P [--port P]
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from kubernetes import client, config


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


class Tool:
    def __init__(self, root: Path, namespace: str):
        self.root, self.namespace = root, namespace
        self.sessions: dict[str, dict] = {}

    def file(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def handle(self, req: "Handler", method: str, path: str, query: dict, body: bytes) -> tuple[int, object, dict]:
        """Each tool (Kiali, Grafana, Jaeger) answers its own API; this base class has none."""
        raise NotImplementedError

    def session(self, req: "Handler", name: str) -> dict | None:
        jar = SimpleCookie(req.headers.get("Cookie", ""))
        morsel = jar.get(name)
        return self.sessions.get(morsel.value) if morsel else None


def api_client() -> client.ApiClient:
    return config.new_client_from_config(config_file=os.environ["KUBECONFIG"])


class Kiali(Tool):
    def __init__(self, root, namespace):
        super().__init__(root, namespace)
        conf = yaml.safe_load(self.file("/kiali-configuration/config.yaml").read_text()) or {}
        self.conf = conf
        self.strategy = (conf.get("auth") or {}).get("strategy", "token")
        self.web_root = ((conf.get("server") or {}).get("web_root") or "/kiali").rstrip("/")
        key = str((conf.get("login_token") or {}).get("signing_key") or "")
        if key.startswith("secret:"):
            key_file = self.file("/kiali-override-secrets/login-token-signing-key/value.txt")
            key = key_file.read_text().strip() if key_file.is_file() else ""
        if self.strategy != "anonymous" and (not key or key.startswith("CHANGEME")):
            sys.exit(f"kiali stand-in: the {self.strategy} strategy needs a signing key, got "
                     f"{'none' if not key else 'the default CHANGEME key'}")
        if key and len(key) not in (16, 24, 32):
            sys.exit(f"kiali stand-in: the signing key must be 16, 24 or 32 characters long (got {len(key)})")
        self.key = key.encode()
        self.prometheus = ((conf.get("external_services") or {}).get("prometheus") or {}).get("url", "")
        log(f"kiali stand-in: strategy {self.strategy}, web root {self.web_root}, prometheus {self.prometheus}")

    def _token_ok(self, token: str) -> str:
        """Use the token against the API server, as Kiali does; the user's name, or ''."""
        base = api_client().configuration
        cfg = client.Configuration()
        cfg.host, cfg.ssl_ca_cert, cfg.verify_ssl = base.host, base.ssl_ca_cert, base.verify_ssl
        cfg.api_key = {"authorization": f"Bearer {token}"}
        api = client.ApiClient(cfg)
        try:
            review = client.AuthenticationV1Api(api).create_self_subject_review(
                client.V1SelfSubjectReview())
            return review.status.user_info.username or "unknown"
        except client.ApiException as exc:
            log(f"kiali stand-in: token refused by the API server (HTTP {exc.status})")
            return ""

    def _resolve(self, url: str) -> str:
        """<svc>.<ns>[.svc...] to the Service's ClusterIP, as cluster DNS would."""
        parts = urllib.parse.urlsplit(url)
        labels = (parts.hostname or "").split(".")
        if len(labels) >= 2 and not labels[-1].isdigit():
            svc = client.CoreV1Api(api_client()).read_namespaced_service(labels[0], labels[1])
            netloc = f"{svc.spec.cluster_ip}:{parts.port or 80}"
            return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        return url

    def graph(self, token: str | None, namespace: str) -> tuple[int, object]:
        api = api_client()
        if token:
            cfg = client.Configuration()
            base = api.configuration
            cfg.host, cfg.ssl_ca_cert, cfg.verify_ssl = base.host, base.ssl_ca_cert, base.verify_ssl
            cfg.api_key = {"authorization": f"Bearer {token}"}
            api = client.ApiClient(cfg)
        deployments = client.AppsV1Api(api).list_namespaced_deployment(namespace).items
        nodes, ids = [], {}
        for dep in deployments:
            labels = dep.spec.template.metadata.labels or {}
            app, version = labels.get("app"), labels.get("version")
            if not app:
                continue
            node_id = hashlib.sha1(f"{namespace}/{app}/{version}".encode()).hexdigest()[:16]
            ids[(app, version)] = node_id
            nodes.append({"data": {"id": node_id, "nodeType": "app", "namespace": namespace, "app": app,
                                   "version": version or "", "workload": dep.metadata.name, "isIdle": True}})
        edges = []
        query = ('sum(rate(istio_requests_total{reporter="source",destination_service_namespace="%s"}[10m])) by '
                 '(source_canonical_service,source_canonical_revision,destination_canonical_service,'
                 'destination_canonical_revision)' % namespace)
        url = self._resolve(self.prometheus.rstrip("/")) + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                result = json.load(resp)["data"]["result"]
        except Exception as exc:  # noqa: BLE001 - Kiali answers 503 when Prometheus cannot be read
            return 503, {"error": f"Failed to query Prometheus at {self.prometheus}: {exc}"}
        for series in result:
            m = series["metric"]
            src = ids.get((m.get("source_canonical_service"), m.get("source_canonical_revision")))
            dst = ids.get((m.get("destination_canonical_service"), m.get("destination_canonical_revision")))
            if src and dst:
                edges.append({"data": {"id": f"{src}-{dst}", "source": src, "target": dst}})
        return 200, {"timestamp": int(time.time()), "duration": 600, "graphType": "versionedApp",
                     "elements": {"nodes": nodes, "edges": edges}}

    def handle(self, req, method, path, query, body):
        root = self.web_root
        if path == f"{root}/healthz":
            return 200, "", {}
        if path == f"{root}/api/auth/info":
            return 200, {"strategy": self.strategy, "authorizationEndpoint": "", "sessionInfo": {}}, {}
        if path == f"{root}/api/authenticate" and method == "POST":
            if self.strategy == "anonymous":
                return 200, {"username": "anonymous"}, {}
            form = urllib.parse.parse_qs(body.decode(errors="replace"))
            token = (form.get("token") or [""])[0]
            user = self._token_ok(token) if token else ""
            if not user:
                return 401, {"error": "Token is not valid or is expired."}, {}
            sid = secrets.token_hex(16)
            self.sessions[sid] = {"token": token, "user": user}
            sig = hmac.new(self.key, sid.encode(), hashlib.sha256).hexdigest()
            self.sessions[f"{sid}.{sig}"] = self.sessions.pop(sid)
            return 200, {"username": user}, {"Set-Cookie": f"kiali-token={sid}.{sig}; Path={root}; HttpOnly"}
        if path == f"{root}/api/namespaces":
            # Kiali's API without a session: 401, as for every API call but
            # auth/info and authenticate (unless anonymous).
            if self.strategy != "anonymous" and self.session(req, "kiali-token") is None:
                return 401, {"error": "Unauthorized"}, {}
            return 200, [{"name": self.namespace}], {}
        if path == f"{root}/api/namespaces/graph":
            token = None
            if self.strategy != "anonymous":
                sess = self.session(req, "kiali-token")
                if sess is None:
                    return 401, {"error": "Unauthorized"}, {}
                token = sess["token"]
            namespace = (query.get("namespaces") or [""])[0].split(",")[0]
            status, doc = self.graph(token, namespace)
            return status, doc, {}
        return 404, {"error": "not found"}, {}


class Grafana(Tool):
    def __init__(self, root, namespace):
        super().__init__(root, namespace)
        ini = configparser.ConfigParser(interpolation=None, strict=False)
        ini_file = self.file("/etc/grafana/grafana.ini")
        if ini_file.is_file():
            ini.read_string(ini_file.read_text())

        def setting(section, key, default):
            env = os.environ.get(f"GF_{section.upper().replace('.', '_')}_{key.upper()}")
            if env is not None:
                return env
            return ini.get(section, key, fallback=default)

        self.anonymous = setting("auth.anonymous", "enabled", "false").strip().lower() == "true"
        self.user = setting("security", "admin_user", "admin")
        self.password = setting("security", "admin_password", "admin")
        self.dashboards = []
        providers = self.file("/etc/grafana/provisioning/dashboards/dashboardproviders.yaml")
        if providers.is_file():
            for provider in (yaml.safe_load(providers.read_text()) or {}).get("providers") or []:
                folder = self.file(((provider.get("options") or {}).get("path")) or "/nonexistent")
                for dash in sorted(folder.glob("*.json")) if folder.is_dir() else []:
                    try:
                        title = json.loads(dash.read_text()).get("title") or dash.stem
                    except ValueError:
                        continue
                    self.dashboards.append({"title": title, "type": "dash-db", "folderTitle": provider.get("folder", ""),
                                            "uri": f"db/{dash.stem}"})
        log(f"grafana stand-in: anonymous {self.anonymous}, admin user {self.user}, "
            f"{len(self.dashboards)} dashboards")

    def handle(self, req, method, path, query, body):
        if path == "/" and method == "GET":
            # Grafana's home: a visitor without a session goes to the login
            # page, unless anonymous access is on.
            if not self.anonymous and self.session(req, "grafana_session") is None:
                return 302, "", {"Location": "/login"}
            return 200, "<!DOCTYPE html><title>Grafana</title>grafana stand-in: home", {}
        if path == "/api/health":
            return 200, {"database": "ok", "version": "stand-in"}, {}
        if path == "/login" and method == "POST":
            try:
                creds = json.loads(body or b"{}")
            except ValueError:
                creds = {}
            if creds.get("user") == self.user and hmac.compare_digest(str(creds.get("password", "")), self.password):
                sid = secrets.token_hex(16)
                self.sessions[sid] = {"user": self.user}
                return 200, {"message": "Logged in"}, {"Set-Cookie": f"grafana_session={sid}; Path=/; HttpOnly"}
            return 401, {"message": "Invalid username or password"}, {}
        if path == "/api/search":
            if not self.anonymous and self.session(req, "grafana_session") is None:
                return 401, {"message": "Unauthorized"}, {}
            found = self.dashboards
            if (query.get("type") or [""])[0] not in ("", "dash-db"):
                found = []
            return 200, found, {}
        return 404, {"message": "Not found"}, {}


class Jaeger(Tool):
    def __init__(self, root, namespace):
        super().__init__(root, namespace)
        conf = yaml.safe_load(self.file("/jaeger-configuration/config.yaml").read_text()) or {}
        query = ((conf.get("extensions") or {}).get("jaeger_query")) or {}
        self.base = (query.get("base_path") or "/").rstrip("/")
        log(f"jaeger stand-in: query base path {self.base or '/'}")

    def handle(self, req, method, path, query, body):
        if path == "/status":
            return 200, {"status": "StatusOK"}, {}
        if path == f"{self.base}/api/services":
            return 200, {"data": [], "total": 0, "limit": 0, "offset": 0, "errors": None}, {}
        return 404, {"errors": [{"code": 404, "msg": "not found"}]}, {}


TOOLS = {"kiali": Kiali, "grafana": Grafana, "jaeger": Jaeger}


class Handler(BaseHTTPRequestHandler):
    tool: Tool

    def _serve(self, method: str) -> None:
        parts = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, doc, headers = self.tool.handle(self, method, parts.path, urllib.parse.parse_qs(parts.query), body)
        except Exception as exc:  # noqa: BLE001
            status, doc, headers = 500, {"error": f"{type(exc).__name__}: {exc}"}, {}
        data = doc.encode() if isinstance(doc, str) else json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(doc, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self._serve("GET")

    def do_POST(self):  # noqa: N802
        self._serve("POST")

    def log_message(self, fmt, *args):
        log(f"{self.address_string()} {fmt % args}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tool", required=True, choices=sorted(TOOLS))
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--port", type=int, action="append", required=True)
    args = parser.parse_args()
    tool = TOOLS[args.tool](args.root, args.namespace)
    handler = type("ToolHandler", (Handler,), {"tool": tool})
    servers = [ThreadingHTTPServer((args.listen, port), handler) for port in args.port]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"{args.tool} stand-in on {args.listen} ports {', '.join(map(str, args.port))}")
    servers[0].serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
