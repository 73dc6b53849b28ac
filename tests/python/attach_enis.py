"""Create and attach ENIs to an instance on the emulator, as another tool or an operator would,
and print their IDs as a JSON list. Usage: attach_enis.py EC2_ENDPOINT INSTANCE_ID SPEC where SPEC
is a JSON list of {"device": N, "ips": K, "tags": {...}} (K secondary IPs, tags may be empty)."""
import json
import sys

import emu

ec2 = emu.ec2_client(sys.argv[1])
instance = sys.argv[2]
subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
ids = []
for want in json.loads(sys.argv[3]):
    tags = want.get("tags") or {}
    spec = [{"ResourceType": "network-interface",
             "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    eni = ec2.create_network_interface(SubnetId=subnet, Description="attached by hand",
                                       SecondaryPrivateIpAddressCount=want.get("ips", 0),
                                       TagSpecifications=spec)["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=instance, DeviceIndex=want["device"])
    ids.append(eni)
print(json.dumps(ids))
