"""Drive `vpc-cni emulate` with boto3 (the AWS SDK for Python, which parses EC2's XML per the
service model) and plain IMDSv2 requests; exit non-zero with a message on any mismatch.

Usage: emulator_check.py EC2_ENDPOINT IMDS_ENDPOINT INSTANCE_ID
"""
import sys
import urllib.error
import urllib.request

import botocore.exceptions

import emu

ec2_url, imds_url, instance_id = sys.argv[1:4]
ec2 = emu.ec2_client(ec2_url, attempts=1)
check = emu.check


inst = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
check(inst["InstanceId"] == instance_id, "DescribeInstances instance id")
check(len(inst["NetworkInterfaces"]) == 1 and inst["NetworkInterfaces"][0]["Attachment"]["DeviceIndex"] == 0, "primary ENI at device 0")
subnet = ec2.describe_subnets(Filters=[{"Name": "availability-zone", "Values": [inst["Placement"]["AvailabilityZone"]]}])["Subnets"][0]
check(subnet["AvailableIpAddressCount"] > 0, "DescribeSubnets count")
types = ec2.describe_instance_types(InstanceTypes=[inst["InstanceType"]])["InstanceTypes"][0]
check(types["NetworkInfo"]["MaximumNetworkInterfaces"] >= 2, "DescribeInstanceTypes network info")

eni = ec2.create_network_interface(
    SubnetId=subnet["SubnetId"], Description="aws-K8S-" + instance_id, SecondaryPrivateIpAddressCount=3,
    TagSpecifications=[{"ResourceType": "network-interface", "Tags": [
        {"Key": "node.k8s.amazonaws.com/instance_id", "Value": instance_id},
        {"Key": "cluster.k8s.amazonaws.com/name", "Value": "emu"}]}],
)["NetworkInterface"]
eni_id = eni["NetworkInterfaceId"]
check(len(eni["PrivateIpAddresses"]) == 4 and eni["PrivateIpAddresses"][0]["Primary"], "CreateNetworkInterface addresses")
check({t["Key"] for t in eni["TagSet"]} >= {"node.k8s.amazonaws.com/instance_id"}, "tags at creation")
att = ec2.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=instance_id, DeviceIndex=1)["AttachmentId"]
ec2.modify_network_interface_attribute(NetworkInterfaceId=eni_id, Attachment={"AttachmentId": att, "DeleteOnTermination": True})
ec2.modify_network_interface_attribute(NetworkInterfaceId=eni_id, ConnectionTrackingSpecification={"TcpEstablishedTimeout": 350, "UdpTimeout": 30})
got = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id, SecondaryPrivateIpAddressCount=2)
check(len(got["AssignedPrivateIpAddresses"]) == 2, "AssignPrivateIpAddresses answer")
ec2.create_tags(Resources=[eni_id], Tags=[{"Key": "createdAt", "Value": "2026-11-23T00:00:00Z"}])

desc = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
check(desc["Attachment"]["DeleteOnTermination"] is True, "DeleteOnTermination after modify")
check(desc.get("ConnectionTrackingConfiguration") == {"TcpEstablishedTimeout": 350, "UdpTimeout": 30},
      f"connection tracking after modify: {desc.get('ConnectionTrackingConfiguration')}")
check(len(desc["PrivateIpAddresses"]) == 6, f"6 addresses, got {len(desc['PrivateIpAddresses'])}")
tagged = ec2.describe_network_interfaces(Filters=[{"Name": "tag-key", "Values": ["node.k8s.amazonaws.com/instance_id"]}])["NetworkInterfaces"]
check([e["NetworkInterfaceId"] for e in tagged] == [eni_id], "tag-key filter")
pages = list(ec2.get_paginator("describe_network_interfaces").paginate(PaginationConfig={"PageSize": 5}))
check(sum(len(p["NetworkInterfaces"]) for p in pages) == 3, "pagination over every ENI (2 primaries + 1)")

secondary = [a["PrivateIpAddress"] for a in desc["PrivateIpAddresses"] if not a["Primary"]]
ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni_id, PrivateIpAddresses=secondary[:2])
check(len(ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]["PrivateIpAddresses"]) == 4, "unassign")
try:
    ec2.delete_network_interface(NetworkInterfaceId=eni_id)
    sys.exit("FAIL: deleting an attached ENI must fail")
except botocore.exceptions.ClientError as e:
    check(e.response["Error"]["Code"] == "InvalidNetworkInterface.InUse", f"in-use error code: {e.response['Error']}")
ec2.detach_network_interface(AttachmentId=att)
try:
    ec2.describe_network_interfaces(NetworkInterfaceIds=["eni-0000000000000dead"])
    sys.exit("FAIL: unknown ENI must fail")
except botocore.exceptions.ClientError as e:
    check(e.response["Error"]["Code"] == "InvalidNetworkInterfaceID.NotFound", f"not-found code: {e.response['Error']}")

# IMDSv2: a token is required; with one, the per-ENI paths answer.
try:
    urllib.request.urlopen(imds_url + "/latest/meta-data/mac")
    sys.exit("FAIL: IMDS answered without a token")
except urllib.error.HTTPError as e:
    check(e.code == 401, f"no token → 401, got {e.code}")
req = urllib.request.Request(imds_url + "/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
token = urllib.request.urlopen(req).read().decode()


def md(path):
    r = urllib.request.Request(imds_url + "/latest/meta-data/" + path, headers={"X-aws-ec2-metadata-token": token})
    return urllib.request.urlopen(r).read().decode()


check(md("instance-id") == instance_id, "instance-id")
mac = md("mac")
check(md(f"network/interfaces/macs/{mac}/device-number") == "0", "device-number of the primary")
check(md(f"network/interfaces/macs/{mac}/local-ipv4s").split("\n")[0] == md("local-ipv4"), "first local-ipv4s is the primary IP")
check(md(f"network/interfaces/macs/{mac}/subnet-ipv4-cidr-block") == subnet["CidrBlock"], "subnet CIDR")
print("emulator: boto3 and IMDSv2 checks passed")
