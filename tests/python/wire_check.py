"""Drive ipamd's socket from an independent gRPC implementation (Python grpcio, stubs generated
from proto/rpc.proto) to prove wire compatibility. Usage: wire_check.py STUB_DIR SOCKET VERSION.
Prints one JSON line with what it saw; exits non-zero on any mismatch."""
import json
import sys

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
import rpc_pb2  # noqa: E402
import rpc_pb2_grpc  # noqa: E402
from google.protobuf import empty_pb2  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

socket, version = sys.argv[2], sys.argv[3]
# grpc-core derives :authority from the socket path, which HTTP/2 servers built on hyper reject;
# Go clients (the upstream plugin) send "localhost", so does this one.
channel = grpc.insecure_channel("unix://" + socket, options=[("grpc.default_authority", "localhost")])
stub = rpc_pb2_grpc.CNIBackendStub(channel)
seen = {}

add = rpc_pb2.AddNetworkRequest(
    K8S_POD_NAME="py-pod", K8S_POD_NAMESPACE="py", ContainerID="c0ffee", IfName="eth0",
    NetworkName="aws-cni", Netns="/proc/1/ns/net", ClientVersion=version)
for _ in range(200):
    reply = stub.AddNetwork(add, timeout=5)
    if reply.Success:
        break
assert reply.Success, reply
ip = reply.IPAllocationMetadata[0].IPv4Addr
seen["add_ip"] = ip
seen["vpc_cidrs"] = list(reply.VPCv4CIDRs)
seen["route_table"] = reply.IPAllocationMetadata[0].RouteTableId

try:
    stub.AddNetwork(rpc_pb2.AddNetworkRequest(ContainerID="x", IfName="eth0", NetworkName="aws-cni", ClientVersion="bogus"), timeout=5)
    raise SystemExit("version mismatch accepted")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e
    seen["bad_version"] = e.details()

rel = stub.DelNetwork(rpc_pb2.DelNetworkRequest(
    K8S_POD_NAME="py-pod", K8S_POD_NAMESPACE="py", ContainerID="c0ffee", IfName="eth0",
    NetworkName="aws-cni", Reason="PodDeleted", ClientVersion=version, K8S_POD_UID="u1"), timeout=5)
assert rel.Success and rel.IPAllocationMetadata[0].IPv4Addr == ip, rel
try:
    stub.DelNetwork(rpc_pb2.DelNetworkRequest(ContainerID="c0ffee", IfName="eth0", NetworkName="aws-cni", Reason="PodDeleted", ClientVersion=version), timeout=5)
    raise SystemExit("second DEL succeeded")
except grpc.RpcError as e:
    seen["second_del"] = e.details()

health = health_pb2_grpc.HealthStub(channel)
seen["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status)
seen["health_aws_node"] = health_pb2.HealthCheckResponse.ServingStatus.Name(
    health.Check(health_pb2.HealthCheckRequest(service="grpc.health.v1.aws-node"), timeout=5).status)
cfg = rpc_pb2_grpc.ConfigServerBackendStub(channel).GetNetworkPolicyConfigs(empty_pb2.Empty(), timeout=5)
seen["node_ip"] = cfg.NodeIPv4
print(json.dumps(seen))
