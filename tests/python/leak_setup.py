"""Prepare the leak-sweep scenario on the emulator and print the ENI IDs as JSON.
Usage: leak_setup.py EC2_ENDPOINT SUBNET_OWNER_INSTANCE OTHER_INSTANCE"""
import datetime
import json
import sys

import emu

ec2 = emu.ec2_client(sys.argv[1])
me, other = sys.argv[2], sys.argv[3]
subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
now = datetime.datetime.now(datetime.timezone.utc)
old = (now - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
fresh = now.strftime("%Y-%m-%dT%H:%M:%SZ")


def eni(description, tags):
    spec = [{"ResourceType": "network-interface", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    return ec2.create_network_interface(SubnetId=subnet, Description=description, TagSpecifications=spec)["NetworkInterface"]["NetworkInterfaceId"]


node = "node.k8s.amazonaws.com/instance_id"
created = "node.k8s.amazonaws.com/createdAt"
out = {
    "old": eni(f"aws-K8S-{other}", {node: other, created: old}),
    "young": eni(f"aws-K8S-{other}", {node: other, created: fresh}),
    "untagged": eni(f"aws-K8S-{other}", {node: other}),
    "foreign": eni("made by someone else", {}),
    "not_ours": eni("some other tool", {node: other, created: old}),
}
# The other node's ENIs: one with DeleteOnTermination, one without; then the node goes away.
for name, dot in (("dot", True), ("kept", False)):
    i = eni(f"aws-K8S-{other}", {node: other})
    att = ec2.attach_network_interface(NetworkInterfaceId=i, InstanceId=other, DeviceIndex=1 if dot else 2)["AttachmentId"]
    ec2.modify_network_interface_attribute(NetworkInterfaceId=i, Attachment={"AttachmentId": att, "DeleteOnTermination": dot})
    out[name] = i
ec2.terminate_instances(InstanceIds=[other])
left = {e["NetworkInterfaceId"] for e in ec2.describe_network_interfaces()["NetworkInterfaces"]}
out["dot_gone"] = out["dot"] not in left
out["kept_left"] = out["kept"] in left
print(json.dumps(out))
