#!/usr/bin/env python3
"""Renders the Xiji Helm chart with Helm's own engine and checks what comes out.

Helm itself does the rendering: `helm_python` (PyPI `helm-python-sdk`) is Helm v4's Go SDK
built as a C library, so `Chart.render` is Helm's template engine with Sprig, `include`,
`tpl`, `lookup` (empty, as under `helm template`), `required` and `fail`, and `lint` is
`helm lint`. Then, for one set of values:

  1. `helm lint --strict` against every Kubernetes version below finds nothing;
  2. every rendered document is written to OUT/<case>/ and validated with
     `kubernetes-validate --strict` against Kubernetes 1.33.0 and 1.37.0 (the API's OpenAPI
     schemas: no unknown field, every type right);
  3. facts the schemas cannot see are checked: the release's labels on every object, names and
     label values the API server would accept, selectors that select, the hub's xiji.toml
     (TOML, backend "kubernetes", every URL pointing at a Service of the release), the token
     Secret the hub shares with the proxy and the node agents, RBAC limited to the namespace
     (and nodes), and the values reflected where they should be (database, ingress, storage
     pools, GPU resource, tolerations, image registry...).

    check_chart.py check --chart deploy/xiji --out DIR --case NAME [-f VALUES.yaml]...
    check_chart.py expect-error --chart deploy/xiji --set-json '{...}' --error 'TEXT'

Exits 1 with every failed check listed; 0 when all hold.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import helm_python as helm
import yaml

RELEASE = "xiji"
# Not "default" and not the release's name: a namespace written into a template shows up.
NAMESPACE = "campus"
KUBE_VERSIONS = ["1.33.0", "1.37.0"]
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}
WORKLOADS = {"Deployment", "DaemonSet", "StatefulSet"}
RELEASE_LABELS = [
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
]
# What the hub's Role may name, and with which verbs (issue 16: the namespace's pods, services,
# secrets, configmaps, events, PVCs, networkpolicies and Volcano's podgroups).
ROLE_RESOURCES = {
    "": {"pods", "pods/status", "pods/log", "services", "secrets", "configmaps",
         "configmaps/finalizers", "events", "persistentvolumeclaims"},
    "networking.k8s.io": {"networkpolicies"},
    "scheduling.volcano.sh": {"podgroups"},
}
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class Checks:
    """Collects failed checks instead of stopping at the first."""

    def __init__(self, case: str) -> None:
        self.case = case
        self.failed: list[str] = []
        self.passed = 0

    def that(self, condition: object, message: str) -> bool:
        if condition:
            self.passed += 1
            return True
        self.failed.append(message)
        return False


def deep_merge(base: dict, top: dict) -> dict:
    """Helm's merge of several -f files: maps merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def user_values(files: list[str], set_json: list[str]) -> dict:
    values: dict = {}
    for name in files:
        with open(name, encoding="utf-8") as f:
            values = deep_merge(values, yaml.safe_load(f) or {})
    for text in set_json:
        values = deep_merge(values, json.loads(text))
    return values


def render(chart_dir: str, values: dict) -> tuple[dict[str, str], dict]:
    """Helm's rendering of the chart: {template path: text}, and the merged values."""
    with helm.Chart.load(chart_dir) as chart:
        merged = chart.merge_values(values)
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return rendered, merged


def documents(rendered: dict[str, str]) -> list[tuple[str, dict]]:
    """Every non-empty YAML document, with the template it came from (NOTES.txt excluded)."""
    docs = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(rendered[path]):
            if doc:
                docs.append((path, doc))
    return docs


def lint(chart_dir: str, values: dict, checks: Checks) -> None:
    for version in KUBE_VERSIONS:
        report = helm.lint(chart_dir, values, strict=True, namespace=NAMESPACE,
                           kube_version=f"v{version}")
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        problems += [{"error": e} for e in report.get("errors") or []]
        checks.that(not problems, f"helm lint --strict (Kubernetes {version}): {problems}")


def validate(out_dir: Path, docs: list[tuple[str, dict]], checks: Checks) -> None:
    """kubernetes-validate --strict on every document, one file each, per version."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.yaml"):
        old.unlink()
    files = []
    for i, (_, doc) in enumerate(docs):
        path = out_dir / f"{i:02d}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        files.append(str(path))
    validator = Path(sys.executable).parent / "kubernetes-validate"
    for version in KUBE_VERSIONS:
        run = subprocess.run(
            [str(validator), "--strict", "--quiet", "-k", version, *files],
            capture_output=True, text=True, timeout=300, check=False,
        )
        output = (run.stdout + run.stderr).strip()
        checks.that(run.returncode == 0 and "ERROR" not in output,
                    f"kubernetes-validate --strict -k {version}: {output or run.returncode}")
        checks.that(len(files) > 0, "nothing was rendered")


def by_kind(docs: list[tuple[str, dict]], kind: str) -> list[dict]:
    return [d for _, d in docs if d["kind"] == kind]


def one(docs: list[tuple[str, dict]], kind: str, component: str) -> dict | None:
    found = [d for d in by_kind(docs, kind)
             if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component]
    return found[0] if len(found) == 1 else None


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def container(workload: dict, name: str) -> dict:
    return next(c for c in pod_spec(workload)["containers"] if c["name"] == name)


def check_metadata(docs: list[tuple[str, dict]], checks: Checks) -> None:
    """What the API server and Helm's conventions ask of every object."""
    seen = set()
    for path, doc in docs:
        meta = doc["metadata"]
        kind, name = doc["kind"], meta.get("name", "")
        what = f"{kind} {name} ({path})"
        checks.that((kind, name) not in seen, f"{what}: a second object of that kind and name")
        seen.add((kind, name))
        checks.that(DNS_SUBDOMAIN.match(name) and len(name) <= 253,
                    f"{what}: name is not a DNS subdomain")
        if kind in {"Service"} | WORKLOADS:
            checks.that(DNS_LABEL.match(name) and len(name) <= 63,
                        f"{what}: a {kind}'s name must be a DNS label of at most 63 characters")
        if kind in CLUSTER_SCOPED:
            checks.that("namespace" not in meta, f"{what}: cluster-scoped, but has a namespace")
            checks.that(NAMESPACE in name, f"{what}: cluster-scoped name without the namespace "
                        "(two releases would collide)")
        else:
            checks.that(meta.get("namespace") == NAMESPACE,
                        f"{what}: namespace {meta.get('namespace')!r}, not the release's")
        labels = meta.get("labels", {})
        for label in RELEASE_LABELS:
            checks.that(label in labels, f"{what}: no {label} label")
        checks.that(labels.get("app.kubernetes.io/instance") == RELEASE,
                    f"{what}: app.kubernetes.io/instance is not the release")
        checks.that(labels.get("app.kubernetes.io/managed-by") == "Helm",
                    f"{what}: app.kubernetes.io/managed-by is not Helm")
        for key, value in labels.items():
            checks.that(isinstance(value, str) and len(value) <= 63 and LABEL_VALUE.match(value),
                        f"{what}: label {key}={value!r} is not a valid label value")


def check_workloads(docs: list[tuple[str, dict]], checks: Checks) -> None:
    pods = []
    for _, w in docs:
        if w["kind"] not in WORKLOADS:
            continue
        what = f"{w['kind']} {w['metadata']['name']}"
        selector = w["spec"]["selector"]["matchLabels"]
        labels = w["spec"]["template"]["metadata"]["labels"]
        pods.append(labels)
        checks.that(selector.items() <= labels.items(),
                    f"{what}: its selector does not select its own pods")
        for label in RELEASE_LABELS + ["app.kubernetes.io/component"]:
            checks.that(label in labels, f"{what}: its pods have no {label} label")
        spec = pod_spec(w)
        names = [v["name"] for v in spec.get("volumes", [])]
        checks.that(len(names) == len(set(names)), f"{what}: two volumes of one name: {names}")
        for name in names:
            checks.that(DNS_LABEL.match(name) and len(name) <= 63,
                        f"{what}: volume name {name!r} is not a DNS label")
        volumes = set(names)
        claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
        for c in spec["containers"]:
            paths = [m["mountPath"] for m in c.get("volumeMounts", [])]
            checks.that(len(paths) == len(set(paths)),
                        f"{what}: container {c['name']} mounts two volumes at one path")
            for m in c.get("volumeMounts", []):
                checks.that(m["name"] in volumes | claims,
                            f"{what}: container {c['name']} mounts unknown volume {m['name']}")
            sc = c.get("securityContext", {})
            checks.that(not (sc.get("privileged") and sc.get("allowPrivilegeEscalation") is False),
                        f"{what}: privileged with allowPrivilegeEscalation false (refused)")
            caps = set(sc.get("capabilities", {}).get("add", []))
            checks.that(not ({"SYS_ADMIN", "CAP_SYS_ADMIN"} & caps
                             and sc.get("allowPrivilegeEscalation") is False),
                        f"{what}: CAP_SYS_ADMIN with allowPrivilegeEscalation false (refused)")
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                target = c.get(probe, {}).get("httpGet", c.get(probe, {}).get("tcpSocket"))
                if target and isinstance(target.get("port"), str):
                    checks.that(target["port"] in ports,
                                f"{what}: {probe} names port {target['port']} it does not have")
    for s in by_kind(docs, "Service"):
        selector = s["spec"].get("selector", {})
        checks.that(any(selector.items() <= p.items() for p in pods),
                    f"Service {s['metadata']['name']}: its selector matches no pod of the release")
    for p in by_kind(docs, "NetworkPolicy"):
        sel = p["spec"]["podSelector"].get("matchLabels", {})
        checks.that(any(sel.items() <= p.items() for p in pods),
                    f"NetworkPolicy {p['metadata']['name']}: selects no pod of the release")


def check_rbac(docs: list[tuple[str, dict]], hub: dict, checks: Checks) -> None:
    roles = by_kind(docs, "Role")
    checks.that(len(roles) == 1, f"one Role expected, found {len(roles)}")
    for role in roles:
        for rule in role.get("rules", []):
            checks.that("*" not in rule.get("verbs", []) + rule.get("resources", [])
                        + rule.get("apiGroups", []), f"Role rule with a wildcard: {rule}")
            checks.that(not rule.get("nonResourceURLs"), f"Role rule with URLs: {rule}")
            for group in rule.get("apiGroups", []):
                allowed = ROLE_RESOURCES.get(group, set())
                for resource in rule.get("resources", []):
                    checks.that(resource in allowed,
                                f"Role grants {resource} in API group {group!r}, beyond the list")
            read_only = {"pods/status", "pods/log", "events"}
            if set(rule.get("resources", [])) <= read_only:
                checks.that(set(rule["verbs"]) <= {"get", "list", "watch"},
                            f"Role may change {rule['resources']}: {rule['verbs']}")
            if "configmaps/finalizers" in rule.get("resources", []):
                checks.that(rule.get("resources") == ["configmaps/finalizers"]
                            and rule.get("verbs") == ["update"],
                            f"Role grants more than updating owners' finalizers: {rule}")
    cluster_roles = by_kind(docs, "ClusterRole")
    checks.that(len(cluster_roles) == 1, f"one ClusterRole expected, found {len(cluster_roles)}")
    for role in cluster_roles:
        for rule in role.get("rules", []):
            checks.that(rule.get("apiGroups") == [""] and rule.get("resources") == ["nodes"],
                        f"the ClusterRole grants more than nodes: {rule}")
            checks.that(set(rule.get("verbs", [])) <= {"get", "list", "watch", "patch"},
                        f"the ClusterRole may do more than read and label nodes: {rule}")
    sa = pod_spec(hub).get("serviceAccountName")
    for kind, role_kind in (("RoleBinding", "Role"), ("ClusterRoleBinding", "ClusterRole")):
        bindings = by_kind(docs, kind)
        checks.that(len(bindings) == 1, f"one {kind} expected")
        for b in bindings:
            checks.that(b["roleRef"]["kind"] == role_kind
                        and any(r["metadata"]["name"] == b["roleRef"]["name"]
                                for r in by_kind(docs, role_kind)),
                        f"{kind} {b['metadata']['name']} binds no {role_kind} of the release")
            checks.that({"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}
                        in b["subjects"], f"{kind} does not bind the hub's ServiceAccount {sa}")


def request_attributes(method: str, path: str, query: dict) -> dict | None:
    """What Kubernetes' authorizer sees of an API request (the API server's RequestInfo): verb,
    API group, namespace, resource (with "/subresource"), name; None for a non-resource URL
    (discovery, /version, /openapi: every authenticated user may read those)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    watch = query.get("watch") in ("true", "1")
    if rest[:1] == ["watch"]:
        watch, rest = True, rest[1:]
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource += "/" + rest[2]
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
    if method in ("GET", "HEAD"):
        verb = "watch" if watch else ("get" if name else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    return {"verb": verb, "group": group, "namespace": namespace, "resource": resource,
            "name": name}


def authorized(docs: list[tuple[str, dict]], account: str, namespace: str,
               attrs: dict) -> bool:
    """Kubernetes RBAC for the ServiceAccount `account` of `namespace`, with the release's
    Roles and ClusterRoles only (a Role grants in its own namespace, a ClusterRole bound by a
    ClusterRoleBinding everywhere)."""
    subject = {"kind": "ServiceAccount", "name": account, "namespace": namespace}

    def rule_allows(rule: dict) -> bool:
        return ((attrs["verb"] in rule.get("verbs", []) or "*" in rule.get("verbs", []))
                and (attrs["group"] in rule.get("apiGroups", [])
                     or "*" in rule.get("apiGroups", []))
                and (attrs["resource"] in rule.get("resources", [])
                     or "*" in rule.get("resources", []))
                and (not rule.get("resourceNames") or attrs["name"] in rule["resourceNames"]))

    for binding_kind, role_kinds in (("RoleBinding", ("Role", "ClusterRole")),
                                     ("ClusterRoleBinding", ("ClusterRole",))):
        for binding in by_kind(docs, binding_kind):
            if subject not in binding.get("subjects", []):
                continue
            if binding_kind == "RoleBinding" and (
                    attrs["namespace"] != binding["metadata"].get("namespace")):
                continue
            role = next((r for r in docs if r[1]["kind"] == binding["roleRef"]["kind"]
                         and r[1]["kind"] in role_kinds
                         and r[1]["metadata"]["name"] == binding["roleRef"]["name"]), None)
            if role and any(rule_allows(rule) for rule in role[1].get("rules", [])):
                return True
    return False


def secret_files(workload: dict, volume_name: str) -> dict[str, tuple[str, str]]:
    """{file in the volume: (Secret or ConfigMap name, key)} for a secret, configMap or
    projected volume."""
    volume = next(v for v in pod_spec(workload)["volumes"] if v["name"] == volume_name)
    sources = [s["secret"] for s in volume.get("projected", {}).get("sources", [])
               if "secret" in s]
    if "secret" in volume:
        sources.append({"name": volume["secret"]["secretName"], **volume["secret"]})
    if "configMap" in volume:
        sources.append(volume["configMap"])
    files = {}
    for src in sources:
        for item in src.get("items", []):
            files[item["path"]] = (src["name"], item["key"])
    return files


def mounted_file(workload: dict, cname: str, path: str) -> tuple[str, str] | None:
    """The (Secret or ConfigMap, key) behind a file path of a container, if a volume holds it."""
    for m in container(workload, cname).get("volumeMounts", []):
        prefix = m["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            try:
                return secret_files(workload, m["name"]).get(path[len(prefix):])
            except StopIteration:
                return None
    return None


def secret_keys(docs: list[tuple[str, dict]], name: str) -> set[str]:
    found = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == name]
    return set(found[0].get("data", {})) if found else set()


def service_url(docs, url: str, checks: Checks, what: str) -> dict | None:
    """The release's Service an in-cluster URL points at (name.namespace.svc:port)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    name, _, rest = host.partition(".")
    ok = checks.that(parts.scheme == "http" and rest == f"{NAMESPACE}.svc",
                     f"{what} {url!r} is not http://<service>.{NAMESPACE}.svc:<port>")
    services = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == name]
    if not checks.that(ok and services, f"{what} {url!r} names no Service of the release"):
        return None
    ports = [p["port"] for p in services[0]["spec"]["ports"]]
    checks.that(parts.port in ports, f"{what} {url!r}: the Service has ports {ports}")
    return services[0]


def check_hub(docs, values: dict, checks: Checks) -> dict | None:
    hub = one(docs, "Deployment", "hub")
    if not checks.that(hub, "no hub Deployment (component hub)"):
        return None
    checks.that(hub["spec"]["replicas"] == 1, "the hub runs more than one replica")
    checks.that(hub["spec"]["strategy"] == {"type": "Recreate"},
                "the hub's strategy is not Recreate (two hubs at once during an upgrade)")
    maps = [c for c in by_kind(docs, "ConfigMap") if "xiji.toml" in c.get("data", {})]
    if not checks.that(len(maps) == 1, "no ConfigMap with xiji.toml"):
        return None
    try:
        config = tomllib.loads(maps[0]["data"]["xiji.toml"])
    except tomllib.TOMLDecodeError as e:
        checks.that(False, f"xiji.toml is not TOML: {e}")
        return None
    hub_c = container(hub, "hub")
    cfg_mount = next((m for m in hub_c["volumeMounts"] if m.get("subPath") == "xiji.toml"), None)
    checks.that(cfg_mount and cfg_mount["mountPath"] in hub_c.get("args", []),
                "the hub is not started with the mounted xiji.toml")
    spawner = config.get("spawner", {})
    k8s = spawner.get("kubernetes", {})
    checks.that(spawner.get("backend") == "kubernetes", 'xiji.toml: backend is not "kubernetes"')
    checks.that(k8s.get("namespace") == NAMESPACE,
                "xiji.toml: spawner.kubernetes.namespace is not the release's namespace")
    proxy_cfg = config.get("proxy", {})
    checks.that(proxy_cfg.get("mode") == "external", 'xiji.toml: proxy mode is not "external"')
    hub_svc = service_url(docs, k8s.get("hub_connect_url", ""), checks,
                          "spawner.kubernetes.hub_connect_url")
    if hub_svc:
        checks.that(hub_svc["spec"]["selector"].items()
                    <= hub["spec"]["template"]["metadata"]["labels"].items(),
                    "hub_connect_url's Service does not select the hub")
    service_url(docs, proxy_cfg.get("hub_url", ""), checks, "proxy.hub_url")
    api_svc = service_url(docs, proxy_cfg.get("api_url", ""), checks, "proxy.api_url")
    hub_port = int(proxy_cfg.get("hub_bind", ":0").rsplit(":", 1)[1])
    checks.that(any(p["containerPort"] == hub_port for p in hub_c["ports"]),
                f"proxy.hub_bind port {hub_port} is not a port of the hub container")

    # The secret files the configuration names are in the hub container, from the Secret keys
    # the proxy and the node agents use.
    secret = next(s for s in by_kind(docs, "Secret")
                  if s["metadata"]["name"].endswith("-secrets"))["metadata"]["name"]
    proxy_token = mounted_file(hub, "hub", proxy_cfg.get("auth_token_file", ""))
    checks.that(proxy_token == (secret, "proxy-token"),
                f"proxy.auth_token_file is {proxy_token}, not the release Secret's proxy-token")
    agent_token = mounted_file(hub, "hub", k8s.get("agent_token_file", ""))
    checks.that(agent_token == (secret, "agent-token"),
                f"agent_token_file is {agent_token}, not the release Secret's agent-token")
    admin_secret = values["hub"]["admin"]["existingSecret"] or secret
    checks.that(mounted_file(hub, "hub", config.get("admin", {}).get("password_file", ""))
                == (admin_secret, "admin-password"),
                "admin.password_file is not the admin-password of the expected Secret")
    for key in ("proxy-token", "agent-token"):
        checks.that(key in secret_keys(docs, secret), f"the release Secret has no {key}")

    # The proxy's API token is the hub's.
    proxy = one(docs, "Deployment", "proxy")
    if checks.that(proxy, "no proxy Deployment (component proxy)"):
        env = {e["name"]: e for e in container(proxy, "proxy").get("env") or []}
        ref = env.get("CONFIGPROXY_AUTH_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
        checks.that((ref.get("name"), ref.get("key")) == proxy_token,
                    "the proxy's CONFIGPROXY_AUTH_TOKEN is not the hub's proxy token")
        args = container(proxy, "proxy")["args"]
        checks.that(f"--default-target={proxy_cfg.get('hub_url')}" in args,
                    "the proxy's default target is not the hub")
        if api_svc:
            checks.that(api_svc["spec"]["selector"].items()
                        <= proxy["spec"]["template"]["metadata"]["labels"].items(),
                        "proxy.api_url's Service does not select the proxy")
        checks.that(pod_spec(proxy).get("automountServiceAccountToken") is False,
                    "the proxy gets a Kubernetes API token it does not need")

    # The node agents: same token, the port the hub calls, read-only host mounts.
    agent = one(docs, "DaemonSet", "node-agent")
    if values["nodeAgent"]["enabled"]:
        if checks.that(agent, "nodeAgent.enabled but no DaemonSet with component node-agent"):
            a = container(agent, "node-agent")
            args = a["args"]
            token_arg = next((x.split("=", 1)[1] for x in args
                              if x.startswith("--token-file=")), "")
            checks.that(mounted_file(agent, "node-agent", token_arg) == agent_token,
                        "the node agent's --token-file is not the hub's agent token")
            checks.that(f"--listen=0.0.0.0:{k8s.get('agent_port')}" in args,
                        "the node agent does not listen on spawner.kubernetes.agent_port")
            checks.that(any(p.get("hostPort") == k8s.get("agent_port") for p in a["ports"]),
                        "the node agent's hostPort is not spawner.kubernetes.agent_port")
            # The host's paths are read-only but for the cgroup filesystem (the freezer).
            host_volumes = {v["name"]: v["hostPath"]["path"] for v in pod_spec(agent)["volumes"]
                            if "hostPath" in v}
            for m in a["volumeMounts"]:
                if m["name"] in host_volumes:
                    checks.that(m.get("readOnly") is True
                                or host_volumes[m["name"]] == "/sys/fs/cgroup",
                                f"the node agent mounts host path {m['mountPath']} writable")
            root = values["nodeAgent"]["containerdRoot"]
            checks.that(any(host_volumes.get(m["name"]) == root and m["mountPath"] == root
                            for m in a["volumeMounts"]),
                        "containerd's directory is not mounted at its own path (--host-root=/)")
            checks.that(pod_spec(agent).get("automountServiceAccountToken") is False,
                        "the node agent gets a Kubernetes API token it does not need")
    else:
        checks.that(agent is None, "nodeAgent.enabled is false, yet a node-agent DaemonSet")
    return config


def check_values_reflected(docs, values: dict, config: dict, checks: Checks) -> None:
    """Where each value must show up in the rendered objects."""
    hub = one(docs, "Deployment", "hub")
    k8s = config["spawner"]["kubernetes"]
    su = values["singleuser"]
    registry = su["image"]["registry"] or values["global"]["imageRegistry"]
    image = f"{su['image']['repository']}:{su['image']['tag']}"
    checks.that(k8s.get("image") == (f"{registry}/{image}" if registry else image),
                f"spawner.kubernetes.image is {k8s.get('image')!r}")
    checks.that(k8s.get("gpu_resource") == su["gpuResource"], "gpu_resource is not the value")
    checks.that(k8s.get("pool_label") == su["poolLabel"], "pool_label is not the value")
    checks.that(k8s.get("scheduler_name") == (su["schedulerName"] or None),
                "scheduler_name is not the value")
    checks.that(k8s.get("default_pool") == (su["defaultPool"] or None),
                "default_pool is not the value")
    checks.that(k8s.get("runtime_class") == (su["runtimeClassName"] or None),
                "runtime_class is not singleuser.runtimeClassName")
    checks.that(k8s.get("image_pull_secrets") == su["image"]["pullSecrets"],
                "image_pull_secrets is not singleuser.image.pullSecrets")
    checks.that(k8s.get("environment") == {k: str(v) for k, v in su["environment"].items()},
                "environment is not singleuser.environment")
    wanted = [{k: t[k] for k in ("key", "operator", "value", "effect") if k in t}
              for t in su["tolerations"]]
    for t in wanted:
        t.setdefault("operator", "Equal")
    checks.that(k8s.get("tolerations", []) == wanted,
                f"spawner.kubernetes.tolerations {k8s.get('tolerations')} != {wanted}")
    for key, value in (("ready_timeout", "readyTimeout"), ("max_nodes", "maxNodes"),
                       ("default_cpus", "defaultCpus"), ("default_memory_mb", "defaultMemoryMb"),
                       ("max_storage_gb", "maxStorageGb"), ("sudo", "sudo")):
        checks.that(k8s.get(key) == su[value], f"{key} is not singleuser.{value}")

    # Whom users' clusters let in (hub_pod_labels) are exactly the hub's and the proxy's pods;
    # agent_pod_labels find exactly this release's node agents.
    access = k8s.get("hub_pod_labels", {})
    for _, d in docs:
        if d["kind"] in WORKLOADS:
            labels = d["spec"]["template"]["metadata"]["labels"]
            component = labels.get("app.kubernetes.io/component")
            checks.that(bool(access) and (access.items() <= labels.items())
                        == (component in ("hub", "proxy")),
                        f"hub_pod_labels {access} and the {component} pods disagree")
            checks.that(k8s.get("agent_pod_labels", {}).items() <= labels.items()
                        if component == "node-agent" else
                        not k8s.get("agent_pod_labels", {}).items() <= labels.items(),
                        f"agent_pod_labels and the {component} pods disagree")
    checks.that(k8s.get("cluster_domain") == values["clusterDomain"],
                "cluster_domain is not clusterDomain")
    if su["caBundle"] or su["caBundleConfigMap"]:
        source = mounted_file(hub, "hub", k8s.get("ca_bundle", ""))
        wanted_map = su["caBundleConfigMap"] or f"{RELEASE}-hub-ca-bundle"
        checks.that(source == (wanted_map, "ca-certificates.crt"),
                    f"ca_bundle is {source}, not {wanted_map}'s ca-certificates.crt")
        if not su["caBundleConfigMap"]:
            bundle = next((c["data"].get("ca-certificates.crt") for c in by_kind(docs, "ConfigMap")
                           if c["metadata"]["name"] == wanted_map), "")
            checks.that(bundle.strip() == su["caBundle"].strip(),
                        "the CA bundle ConfigMap does not hold singleuser.caBundle")
    else:
        checks.that("ca_bundle" not in k8s, "ca_bundle set though no CA bundle is given")
    checks.that(k8s.get("instance") == (values["fullnameOverride"] or RELEASE),
                "spawner.kubernetes.instance is not the release's full name")
    for _, d in docs:
        if d["kind"] in WORKLOADS:
            for c in pod_spec(d)["containers"]:
                if values["global"]["imageRegistry"]:
                    checks.that(c["image"].startswith(values["global"]["imageRegistry"] + "/"),
                                f"{d['metadata']['name']}: image {c['image']} ignores "
                                "global.imageRegistry")
            pulls = [s["name"] for s in pod_spec(d).get("imagePullSecrets", [])]
            checks.that(pulls == values["imagePullSecrets"],
                        f"{d['metadata']['name']}: imagePullSecrets {pulls}")

    # Storage pools and the hub's data volume: mounted in the hub at host_path, and the same
    # volume source in the configuration.
    hub_mounts = {m["mountPath"]: m["name"] for m in container(hub, "hub")["volumeMounts"]}
    hub_volumes = {v["name"]: v for v in pod_spec(hub)["volumes"]}
    expected = []
    persistence = values["hub"]["persistence"]
    if persistence["enabled"] and persistence["shareWithNodes"]:
        expected.append({"host_path": persistence["mountPath"],
                         "claim_name": persistence["existingClaim"] or f"{RELEASE}-hub"})
    for pool in values["storagePools"]:
        entry = {"host_path": pool["mountPath"]}
        if pool.get("claimName"):
            entry["claim_name"] = pool["claimName"]
        elif pool.get("nfs"):
            entry |= {"nfs_server": pool["nfs"]["server"], "nfs_path": pool["nfs"]["path"]}
        else:
            entry["node_path"] = pool["nodePath"]
        expected.append(entry)
    checks.that(k8s.get("volumes", []) == expected,
                f"spawner.kubernetes.volumes {k8s.get('volumes')} != {expected}")
    for entry in expected:
        volume = hub_volumes.get(hub_mounts.get(entry["host_path"], ""), {})
        source = ({"claim_name": volume["persistentVolumeClaim"]["claimName"]}
                  if "persistentVolumeClaim" in volume else
                  {"nfs_server": volume["nfs"]["server"], "nfs_path": volume["nfs"]["path"]}
                  if "nfs" in volume else
                  {"node_path": volume["hostPath"]["path"]} if "hostPath" in volume else {})
        checks.that(source == {k: v for k, v in entry.items() if k != "host_path"},
                    f"the hub's volume at {entry['host_path']} is {volume}, not {entry}")

    # The database.
    env = {e["name"]: e for e in container(hub, "hub").get("env") or []}
    db = env.get("XIJI_DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef")
    stateful = one(docs, "StatefulSet", "postgresql")
    database = values["database"]
    if values["postgresql"]["enabled"]:
        checks.that(stateful, "postgresql.enabled but no PostgreSQL StatefulSet")
        checks.that(db and "database-url" in secret_keys(docs, db["name"]),
                    "the hub's database URL is not the release Secret's database-url")
        if stateful:
            pg_env = {e["name"]: e for e in container(stateful, "postgresql")["env"]}
            ref = pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
            checks.that(ref["name"] == (db or {}).get("name")
                        and "postgres-password" in secret_keys(docs, ref["name"]),
                        "PostgreSQL's password is not in the Secret the hub reads its URL from")
    else:
        checks.that(stateful is None, "postgresql.enabled is false, yet a StatefulSet")
        if database["existingSecret"]:
            checks.that(db == {"name": database["existingSecret"],
                               "key": database["existingSecretKey"]},
                        f"the hub's database URL comes from {db}, not database.existingSecret")
        elif database["url"]:
            checks.that(db and "database-url" in secret_keys(docs, db["name"]),
                        "database.url is not given to the hub")
        else:
            checks.that(db is None, "no database configured, yet XIJI_DATABASE_URL is set")

    # Ingress.
    ingresses = by_kind(docs, "Ingress")
    ing = values["ingress"]
    if ing["enabled"]:
        proxy_svc = next(s for s in by_kind(docs, "Service")
                         if s["metadata"]["name"] == f"{RELEASE}-proxy")
        if checks.that(len(ingresses) == 1, "ingress.enabled but no Ingress"):
            rules = ingresses[0]["spec"]["rules"]
            checks.that([r["host"] for r in rules] == ing["hosts"], "Ingress hosts differ")
            for r in rules:
                backend = r["http"]["paths"][0]["backend"]["service"]
                checks.that(backend["name"] == proxy_svc["metadata"]["name"]
                            and backend["port"]["name"] in
                            [p["name"] for p in proxy_svc["spec"]["ports"]],
                            "the Ingress does not lead to the proxy's public Service")
            public = config.get("public_url", "")
            checks.that(urlsplit(public).hostname == ing["hosts"][0],
                        f"public_url {public!r} is not the first ingress host")
    else:
        checks.that(not ingresses, "ingress.enabled is false, yet an Ingress")

    # Tolerations and node selectors of the chart's own pods.
    for component, key in (("hub", "hub"), ("proxy", "proxy")):
        d = one(docs, "Deployment", component)
        if d:
            checks.that(pod_spec(d).get("tolerations", []) == values[key]["tolerations"],
                        f"{component}: tolerations are not {key}.tolerations")
            checks.that(pod_spec(d).get("nodeSelector", {}) == values[key]["nodeSelector"],
                        f"{component}: nodeSelector is not {key}.nodeSelector")
    policies = by_kind(docs, "NetworkPolicy")
    checks.that(bool(policies) == values["networkPolicy"]["enabled"],
                "NetworkPolicies do not follow networkPolicy.enabled")
    agent_policy = any(p["metadata"]["labels"].get("app.kubernetes.io/component") == "node-agent"
                       for p in policies)
    checks.that(agent_policy == (values["networkPolicy"]["enabled"]
                                 and values["networkPolicy"]["nodeAgent"]
                                 and values["nodeAgent"]["enabled"]),
                "the node agents' NetworkPolicy does not follow networkPolicy.nodeAgent")


def check(args: argparse.Namespace) -> int:
    checks = Checks(args.case)
    values = user_values(args.values, args.set_json)
    try:
        rendered, merged = render(args.chart, values)
    except helm.HelmError as e:
        print(f"FAIL {args.case}: Helm could not render the chart: {e}")
        return 1
    docs = documents(rendered)
    lint(args.chart, values, checks)
    validate(Path(args.out) / args.case, docs, checks)
    check_metadata(docs, checks)
    check_workloads(docs, checks)
    config = check_hub(docs, merged, checks)
    hub = one(docs, "Deployment", "hub")
    if hub:
        check_rbac(docs, hub, checks)
    if config:
        check_values_reflected(docs, merged, config, checks)
    kinds = sorted({d["kind"] for _, d in docs})
    if checks.failed:
        print(f"FAIL {args.case}: {len(checks.failed)} of "
              f"{len(checks.failed) + checks.passed} checks failed")
        for message in checks.failed:
            print(f"  - {message}")
        return 1
    print(f"ok   {args.case}: {len(docs)} objects ({', '.join(kinds)}), {checks.passed} checks, "
          f"valid against Kubernetes {' and '.join(KUBE_VERSIONS)}")
    return 0


def expect_error(args: argparse.Namespace) -> int:
    values = user_values(args.values, args.set_json)
    try:
        render(args.chart, values)
    except helm.HelmError as e:
        if args.error in str(e):
            print(f"ok   refused as expected: {args.error!r}")
            return 0
        print(f"FAIL rendering failed, but not with {args.error!r}: {e}")
        return 1
    print(f"FAIL the chart rendered values it should refuse ({args.error!r})")
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("check", "expect-error"):
        p = sub.add_parser(name)
        p.add_argument("--chart", required=True)
        p.add_argument("-f", "--values", action="append", default=[])
        p.add_argument("--set-json", action="append", default=[])
        if name == "check":
            p.add_argument("--case", required=True)
            p.add_argument("--out", required=True)
        else:
            p.add_argument("--error", required=True)
    args = parser.parse_args()
    return check(args) if args.command == "check" else expect_error(args)


if __name__ == "__main__":
    sys.exit(main())
