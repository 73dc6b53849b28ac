"""The Helm chart, rendered by Helm's own engine (PyPI helm-python-sdk binds libhelm) and checked
offline. Usage:

  chart.py render CHART_DIR OUT.yaml      write the static manifest (defaults, kube-system)
  chart.py check CHART_DIR MANIFEST OUTDIR
      render the defaults and compare with MANIFEST (out of sync: exit 1 naming the first
      difference), render variations (ENIConfigs, PodMonitor, ANNOTATE_POD_IP, ENABLE_POD_ENI,
      an upstream values file), validate every built-in object against the Kubernetes OpenAPI
      schemas of two versions (PyPI kubernetes-validate, strict) and every ENIConfig against the
      chart's CRD schema; write each rendering to OUTDIR/<name>.yaml for `kubectl apply`.
"""
import json
import os
import sys

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

VERSIONS = ["1.33.0", "1.37.0"]
HEADER = (
    "# Rendered from charts/aws-vpc-cni with its default values (release aws-vpc-cni, namespace\n"
    "# kube-system) by `$VPC_CNI_PYTHON tests/python/chart.py render charts/aws-vpc-cni config/vpc-cni-rs.yaml`\n"
    "# (the Python `bash scripts/check` sets up, with helm-python-sdk).\n"
    "# Do not edit: a test checks that it matches the chart.\n"
)

VARIATIONS = {
    "custom-networking": {
        "env": {"AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG": "true", "ENI_CONFIG_LABEL_DEF": "topology.kubernetes.io/zone"},
        "eniConfig": {"create": True, "subnets": {
            "us-west-2a": {"id": "subnet-0a", "securityGroups": ["sg-0a"]},
            "us-west-2b": {"id": "subnet-0b"}}},
    },
    "monitoring": {"podMonitor": {"create": True, "interval": "30s"}},
    "annotate-sgp": {"env": {"ANNOTATE_POD_IP": "true", "ENABLE_POD_ENI": "true"},
                      "cniConfig": {"enabled": True, "fileContents": "{}"}},
    # A values file written for upstream's chart: its ECR keys are accepted and ignored.
    "upstream-values": {"image": {"region": "us-west-2", "account": "602401143452", "domain": "amazonaws.com",
                                  "tag": "v1.23.1"},
                        "init": {"image": {"region": "us-west-2", "tag": "v1.23.1"}},
                        "originalMatchLabels": True, "resources": {"requests": {"cpu": "50m"}}},
}


def render(chart_dir, values):
    chart = helm.Chart.load(chart_dir)
    files = chart.render(values, name="aws-vpc-cni", namespace="kube-system", is_install=True)
    text = ""
    for crd in sorted(os.listdir(os.path.join(chart_dir, "crds"))):
        with open(os.path.join(chart_dir, "crds", crd)) as f:
            text += "---\n# Source: aws-vpc-cni/crds/" + crd + "\n" + f.read()
    for path in sorted(files):
        body = files[path]
        if path.endswith("NOTES.txt") or not body.strip():
            continue
        for part in body.split("\n---"):
            if yaml.safe_load(part):
                text += "---\n# Source: " + path + "\n" + part.strip("\n-") + "\n"
    return text


def objects(text):
    return [d for d in yaml.safe_load_all(text) if d]


def validate(text, crd_schema):
    n = 0
    for o in objects(text):
        kind = o["kind"]
        what = f'{kind}/{o["metadata"]["name"]}'
        if kind == "ENIConfig":
            jsonschema.validate(o, crd_schema)
        elif kind == "PodMonitor":
            # No schema offline (a Prometheus Operator CRD): its required shape by hand.
            assert o["spec"]["podMetricsEndpoints"][0]["port"] == "metrics", what
            assert o["spec"]["selector"]["matchLabels"], what
        else:
            for v in VERSIONS:
                try:
                    kubernetes_validate.validate(o, v, strict=True)
                except kubernetes_validate.ValidationError as e:
                    sys.exit(f"{what}: invalid for Kubernetes {v}: {e.message} at {list(e.path)}")
        n += 1
    return n


def main():
    cmd, chart_dir = sys.argv[1], sys.argv[2]
    if cmd == "render":
        with open(sys.argv[3], "w") as f:
            f.write(HEADER + render(chart_dir, {}))
        return
    manifest, out = sys.argv[3], sys.argv[4]
    with open(os.path.join(chart_dir, "crds", "eniconfig.yaml")) as f:
        crd_schema = yaml.safe_load(f)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    now = HEADER + render(chart_dir, {})
    with open(manifest) as f:
        committed = f.read()
    if now != committed:
        for i, (a, b) in enumerate(zip(now.splitlines(), committed.splitlines())):
            if a != b:
                sys.exit(f"{manifest} is out of sync with the chart at line {i + 1}: chart {a!r}, file {b!r}; "
                         f"run: $VPC_CNI_PYTHON tests/python/chart.py render {chart_dir} {manifest}")
        sys.exit(f"{manifest} is out of sync with the chart (length); run: "
                 f"$VPC_CNI_PYTHON tests/python/chart.py render {chart_dir} {manifest}")
    report = {"default": validate(now, crd_schema)}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "default.yaml"), "w") as f:
        f.write(now)
    for name, values in VARIATIONS.items():
        text = render(chart_dir, values)
        report[name] = validate(text, crd_schema)
        with open(os.path.join(out, name + ".yaml"), "w") as f:
            f.write(text)
    # What a variation must change, checked here so the test fails if a template ignores a key.
    roles = {n: [o for o in objects(open(os.path.join(out, n + ".yaml")).read()) if o["kind"] == "ClusterRole"][0]
             for n in ["default", "annotate-sgp"]}
    def verbs(role, res):
        return sorted(v for r in role["rules"] if res in r["resources"] for v in r["verbs"])
    assert "patch" not in verbs(roles["default"], "pods"), roles["default"]
    assert "patch" in verbs(roles["annotate-sgp"], "pods")
    assert verbs(roles["default"], "cninodes") == [] and verbs(roles["annotate-sgp"], "cninodes") == ["get", "patch"]
    ds = [o for o in objects(open(os.path.join(out, "upstream-values.yaml")).read()) if o["kind"] == "DaemonSet"][0]
    assert ds["spec"]["selector"]["matchLabels"] == {"k8s-app": "aws-node"}, ds["spec"]["selector"]
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == "localhost/vpc-cni-rs:v1.23.1"
    print(json.dumps({"objects": report, "versions": VERSIONS}))


main()
