"""Assign secondary IPs to an instance's primary ENI on the emulator behind the daemon's back.
Usage: assign_behind.py EC2_ENDPOINT INSTANCE_ID COUNT; prints the new addresses as JSON."""
import json
import sys

import emu

ec2 = emu.ec2_client(sys.argv[1])
primary = emu.primary_eni(ec2, sys.argv[2])
got = ec2.assign_private_ip_addresses(NetworkInterfaceId=primary, SecondaryPrivateIpAddressCount=int(sys.argv[3]))
print(json.dumps([a["PrivateIpAddress"] for a in got["AssignedPrivateIpAddresses"]]))
