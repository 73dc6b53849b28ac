"""The Python `kubernetes` client (an independent implementation) against `vpc-cni emulate
--kubernetes`: discovery and version, list/get, strategic merge patch, watch of a change,
custom objects (CNINode) create and merge patch with a stale resourceVersion (409),
events.k8s.io Events read back as core/v1, and a wrong token (401).

Usage: k8s_client.py KUBECONFIG NODE. Prints one JSON document of what it saw."""
import json
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

kc, node = sys.argv[1], sys.argv[2]
api_client = config.new_client_from_config(config_file=kc)
core = client.CoreV1Api(api_client)
out = {}
out["version"] = client.VersionApi(api_client).get_code().git_version
out["groups"] = sorted(g.name for g in client.ApisApi(api_client).get_api_versions().groups)
n = core.read_node(node)
out["capacity_pods"] = n.status.capacity["pods"]

# A strategic merge patch of labels, and a watch that sees it.
rv = core.list_node().metadata.resource_version
seen = []


def watch_nodes():
    w = watch.Watch()
    for ev in w.stream(core.list_node, resource_version=rv, timeout_seconds=10):
        if ev["object"].metadata.labels.get("py") == "yes":
            seen.append(ev["type"])
            w.stop()


t = threading.Thread(target=watch_nodes)
t.start()
time.sleep(0.5)
core.patch_node(node, {"metadata": {"labels": {"py": "yes"}}})
t.join(15)
out["watched"] = seen
out["label"] = core.read_node(node).metadata.labels.get("py")

# Custom objects: a CNINode, then a merge patch carrying a stale resourceVersion.
co = client.CustomObjectsApi(api_client)
g, v, p = "vpcresources.k8s.aws", "v1alpha1", "cninodes"
made = co.create_cluster_custom_object(g, v, p, {"apiVersion": f"{g}/{v}", "kind": "CNINode",
                                                 "metadata": {"name": node}, "spec": {"features": []}})
stale = made["metadata"]["resourceVersion"]
co.patch_cluster_custom_object(g, v, p, node, {"spec": {"features": [{"name": "SecurityGroupsForPods"}]}})
try:
    co.patch_cluster_custom_object(g, v, p, node, {"metadata": {"resourceVersion": stale},
                                                   "spec": {"features": []}})
    out["stale_patch"] = "accepted"
except ApiException as e:
    out["stale_patch"] = e.status
out["features"] = co.get_cluster_custom_object(g, v, p, node)["spec"]["features"]

# An events.k8s.io Event, read back through core/v1 (what kubectl get events shows).
ev = client.EventsV1Event(
    metadata=client.V1ObjectMeta(generate_name="py."), event_time="2026-12-02T00:00:00.000000Z",
    reason="PyTest", note="from python", type="Normal", action="Test",
    reporting_controller="py", reporting_instance="py",
    regarding=client.V1ObjectReference(kind="Node", name=node, api_version="v1"))
client.EventsV1Api(api_client).create_namespaced_event("default", ev)
legacy = [e for e in core.list_namespaced_event("default").items if e.reason == "PyTest"]
out["event_message"] = legacy[0].message if legacy else None

# A wrong token.
cfg = client.Configuration()
cfg.host = api_client.configuration.host
cfg.ssl_ca_cert = api_client.configuration.ssl_ca_cert
cfg.api_key = {"authorization": "Bearer wrong"}
try:
    client.CoreV1Api(client.ApiClient(cfg)).list_node()
    out["wrong_token"] = "accepted"
except ApiException as e:
    out["wrong_token"] = e.status
print(json.dumps(out))
