"""Unassign every IPv6 prefix of an instance's primary ENI, as an operator (or another tool) might,
and print them as JSON. Usage: unassign_ipv6_prefixes.py EC2_ENDPOINT INSTANCE_ID"""
import json
import sys

import emu

ec2 = emu.ec2_client(sys.argv[1], attempts=30)
eni = emu.primary_eni(ec2, sys.argv[2])
desc = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
prefixes = [p["Ipv6Prefix"] for p in desc.get("Ipv6Prefixes", [])]
emu.check(prefixes, f"{eni} has no IPv6 prefix to unassign")
ec2.unassign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6Prefixes=prefixes)
print(json.dumps(prefixes))
