"""Drive the IPv6 side of `vpc-cni emulate --ipv6-cidr 2001:db8:1200::/56` with boto3 and IMDSv2;
exit non-zero with a message on any mismatch.

Usage: emulator_ipv6_check.py EC2_ENDPOINT IMDS_ENDPOINT INSTANCE_ID
"""
import ipaddress
import sys
import urllib.error
import urllib.request

import emu

ec2_url, imds_url, instance_id = sys.argv[1:4]
ec2 = emu.ec2_client(ec2_url, attempts=1)
check = emu.check


subnet = ec2.describe_subnets()["Subnets"][0]
assoc = subnet.get("Ipv6CidrBlockAssociationSet", [])
check(len(assoc) == 1 and assoc[0]["Ipv6CidrBlock"] == "2001:db8:1200::/64", f"subnet IPv6 block: {assoc}")
block = ipaddress.ip_network(assoc[0]["Ipv6CidrBlock"])
inst = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
primary = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
p = ec2.describe_network_interfaces(NetworkInterfaceIds=[primary])["NetworkInterfaces"][0]
check([a["Ipv6Address"] for a in p["Ipv6Addresses"]] == ["2001:db8:1200::4"], f"node IPv6: {p['Ipv6Addresses']}")

got = ec2.assign_ipv6_addresses(NetworkInterfaceId=primary, Ipv6PrefixCount=1)
prefixes = got.get("AssignedIpv6Prefixes", [])
check(len(prefixes) == 1 and ipaddress.ip_network(prefixes[0]).prefixlen == 80
      and ipaddress.ip_network(prefixes[0]).subnet_of(block), f"one /80 of the subnet: {got}")
addrs = ec2.assign_ipv6_addresses(NetworkInterfaceId=primary, Ipv6AddressCount=2).get("AssignedIpv6Addresses", [])
check(len(addrs) == 2 and all(ipaddress.ip_address(a) in block for a in addrs), f"two addresses: {addrs}")
p = ec2.describe_network_interfaces(NetworkInterfaceIds=[primary])["NetworkInterfaces"][0]
check([x["Ipv6Prefix"] for x in p["Ipv6Prefixes"]] == prefixes, "Ipv6Prefixes in DescribeNetworkInterfaces")
check(len(p["Ipv6Addresses"]) == 3, "node address + 2")

eni = ec2.create_network_interface(SubnetId=subnet["SubnetId"], Ipv6PrefixCount=1)["NetworkInterface"]
check(len(eni["Ipv6Prefixes"]) == 1, f"CreateNetworkInterface(Ipv6PrefixCount=1): {eni['Ipv6Prefixes']}")

req = urllib.request.Request(imds_url + "/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
token = urllib.request.urlopen(req).read().decode()


def md(path):
    r = urllib.request.Request(imds_url + "/latest/meta-data/" + path, headers={"X-aws-ec2-metadata-token": token})
    return urllib.request.urlopen(r).read().decode()


mac = md("mac")
base = f"network/interfaces/macs/{mac}/"
check(md("ipv6") == "2001:db8:1200::4", "IMDS ipv6")
check(md(base + "ipv6-prefix").split("\n") == prefixes, "IMDS ipv6-prefix")
check(len(md(base + "ipv6s").split("\n")) == 3, "IMDS ipv6s")
check(md(base + "subnet-ipv6-cidr-blocks") == "2001:db8:1200::/64", "IMDS subnet-ipv6-cidr-blocks")
check(md(base + "vpc-ipv6-cidr-blocks") == "2001:db8:1200::/56", "IMDS vpc-ipv6-cidr-blocks")
check("ipv6-prefix" in md(base).split("\n"), "the directory lists ipv6-prefix")

gone = ec2.unassign_ipv6_addresses(NetworkInterfaceId=primary, Ipv6Prefixes=prefixes)
check(gone.get("UnassignedIpv6Prefixes") == prefixes, f"UnassignIpv6Addresses answer: {gone}")
try:
    md(base + "ipv6-prefix")
    sys.exit("FAIL: ipv6-prefix must be absent (404) once empty")
except urllib.error.HTTPError as e:
    check(e.code == 404, f"empty list path → 404, got {e.code}")
print("emulator: IPv6 checks passed")
