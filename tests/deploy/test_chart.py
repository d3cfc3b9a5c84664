"""The Helm chart, rendered offline by Helm's own library (helm-python-sdk) with each values file
of its ci/ folder, every manifest validated against the Kubernetes API schemas
(kubernetes-validate); and the pod the chart makes is the container the container test runs:
the same privileges, probes and drain hook."""

from __future__ import annotations

import re

import helm_python
import kubernetes_validate
import pytest
import yaml

from support.containers import (
    CHART,
    COMPOSE,
    COMPOSE_CLUSTER,
    DEPLOY,
    DRAIN_HOOK,
    REPO,
    compose_service,
    privileges,
)

KUBERNETES = "1.33.0"
VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
# Custom resources (the Prometheus operator's, KEDA's): no schema in kubernetes-validate.
CUSTOM_KINDS = {"ServiceMonitor": "monitoring.coreos.com/v1", "ScaledObject": "keda.sh/v1alpha1"}


def render(values: dict | None = None) -> list[dict]:
    with helm_python.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values or {}, name="gw", namespace="sandbox")
    return [doc for path, text in manifests.items() if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]


def values_of(path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def gateway_container(docs: list[dict]) -> dict:
    (statefulset,) = by_kind(docs, "StatefulSet")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict) -> dict:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


@pytest.fixture(scope="module")
def default_docs() -> list[dict]:
    return render()


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES],
                         ids=lambda p: "defaults" if p is None else p.name)
def test_every_manifest_is_valid_for_kubernetes(values_file):
    docs = render(values_of(values_file) if values_file else None)
    kinds = {doc["kind"] for doc in docs}
    assert {"StatefulSet", "Service", "PodDisruptionBudget"} <= kinds or values_file
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            assert doc["apiVersion"] == CUSTOM_KINDS[doc["kind"]]
            continue
        # strict: a field the API does not know (a typo in a template) fails too.
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_cluster_values_render_the_optional_objects():
    docs = render(values_of(CHART / "ci" / "cluster-values.yaml"))
    kinds = {doc["kind"] for doc in docs}
    assert {"ServiceMonitor", "ScaledObject", "HorizontalPodAutoscaler"} <= kinds
    assert "Secret" not in kinds  # existingSecret: the chart makes none
    (scaled,) = by_kind(docs, "ScaledObject")
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    assert "gateway_pool_target" in query and 'state="warm"' in query
    assert 'namespace="sandbox"' in query  # the template inside the value was rendered
    pod = by_kind(docs, "StatefulSet")[0]["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "cgroupv2"
    assert pod["nodeSelector"] == {"sandbox": "true"}
    assert pod["tolerations"][0]["key"] == "sandbox"
    container = gateway_container(docs)
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    env = env_of(container)
    assert env["GATEWAY_TLS_CERT"] == "/etc/gateway/tls/tls.crt"
    assert "GATEWAY_INSECURE_HTTP" not in env


def test_nodes_are_named_by_their_pod_and_reached_through_the_headless_service():
    docs = render(values_of(CHART / "ci" / "cluster-values.yaml"))
    env = env_of(gateway_container(docs))
    assert env["GATEWAY_NODE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    headless = next(s for s in by_kind(docs, "Service") if s["spec"].get("clusterIP") == "None")
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert by_kind(docs, "StatefulSet")[0]["spec"]["serviceName"] == headless["metadata"]["name"]
    assert env["GATEWAY_ADVERTISE_URL"] == (
        f"wss://$(GATEWAY_NODE_ID).{headless['metadata']['name']}.$(POD_NAMESPACE).svc:8765")
    # Secrets come from the Secret, never from plain values.
    for name, key in (("GATEWAY_TOKENS", "tokens"), ("GATEWAY_CLUSTER_TOKEN", "cluster-token"),
                      ("GATEWAY_REGISTRY_URL", "registry-url"), ("GATEWAY_STORE_KEY", "store-key")):
        assert env[name]["secretKeyRef"] == {"name": "gateway-secrets", "key": key,
                                             "optional": True}


def test_several_replicas_without_redis_are_refused_with_the_reason():
    with pytest.raises(helm_python.HelmError, match="replicas > 1 is a cluster"):
        render({"replicas": 3})
    with pytest.raises(helm_python.HelmError, match="cluster.store.url"):
        render({"replicas": 2, "cluster": {"registryUrl": "redis://r:6379/0"}})


def test_the_pod_has_the_privileges_the_container_test_ran_with(default_docs):
    # The container test runs deploy/compose.yaml; the cluster file grants the same.
    proven = privileges(compose_service(COMPOSE, "gateway"))
    assert privileges(compose_service(COMPOSE_CLUSTER, "node1")) == proven
    context = gateway_container(default_docs)["securityContext"]
    assert sorted(context["capabilities"]["add"]) == proven["add"]
    assert sorted(context["capabilities"]["drop"]) == proven["drop"]
    assert context["seccompProfile"] == {"type": proven["seccomp"].capitalize()}
    assert context["appArmorProfile"] == {"type": proven["apparmor"].capitalize()}
    assert context.get("privileged", False) is False
    service = compose_service(COMPOSE, "gateway")
    assert context["readOnlyRootFilesystem"] == service["read_only"]
    # What the read-only root leaves writable in the container test, the pod has as emptyDirs.
    mounts = {m["mountPath"]: m["name"] for m in gateway_container(default_docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in
               by_kind(default_docs, "StatefulSet")[0]["spec"]["template"]["spec"]["volumes"]}
    for path in service["tmpfs"]:
        assert "emptyDir" in volumes[mounts[path]], path


def test_probes_and_the_drain_hook_are_the_ones_the_container_test_used(default_docs):
    container = gateway_container(default_docs)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == [DRAIN_HOOK]
    # The image puts deploy/drain.sh there, and its HEALTHCHECK asks /healthz too.
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"COPY deploy/drain.sh {DRAIN_HOOK}" in dockerfile
    assert "/healthz" in (DEPLOY / "healthcheck.py").read_text()
    # The drain and the gateway's own SIGTERM grace fit in the pod's termination grace.
    values = values_of(CHART / "values.yaml")
    pod = by_kind(default_docs, "StatefulSet")[0]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > values["drainTimeout"] + values["shutdownGrace"]
    env = env_of(container)
    assert env["GATEWAY_SHUTDOWN_GRACE"] == str(values["shutdownGrace"])
    assert env["GATEWAY_DRAIN_TIMEOUT"] == str(values["drainTimeout"])


def test_one_node_keeps_its_data_on_a_volume_and_its_tokens_in_a_secret():
    docs = render(values_of(CHART / "ci" / "single-values.yaml"))
    statefulset = by_kind(docs, "StatefulSet")[0]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    mounts = {m["name"]: m["mountPath"] for m in gateway_container(docs)["volumeMounts"]}
    assert mounts["data"] == "/var/lib/gateway"
    (secret,) = by_kind(docs, "Secret")
    assert secret["stringData"]["admin-token"] == "admin-secret"
    env = env_of(gateway_container(docs))
    assert "GATEWAY_REGISTRY_URL" not in env and env["GATEWAY_POOL_SIZE"] == "2"


def test_the_compose_haproxy_keeps_the_cluster_configs_rules():
    """deploy/haproxy-compose.cfg is deploy/haproxy-cluster.cfg with compose's names: the same
    checks and the same paths refused from outside."""
    template = (DEPLOY / "haproxy-cluster.cfg").read_text()
    compose = (DEPLOY / "haproxy-compose.cfg").read_text()
    rule = re.compile(r"^\s*(http-request deny .*|option httpchk .*|http-check .*|"
                      r"use_backend .*|balance .*|timeout .*)$", re.M)
    assert sorted(rule.findall(compose)) == sorted(rule.findall(template))
    names = {service for service in yaml.safe_load(COMPOSE_CLUSTER.read_text())["services"]
             if service.startswith("node")}
    assert set(re.findall(r"^\s*server (\S+) \1:8765", compose, re.M)) == names
