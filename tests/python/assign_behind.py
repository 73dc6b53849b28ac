"""Assign secondary IPs to an instance's primary ENI on the emulator behind the daemon's back.
Usage: assign_behind.py EC2_ENDPOINT INSTANCE_ID COUNT; prints the new addresses as JSON."""
import json
import sys

import boto3

ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="emulator", aws_secret_access_key="emulator")
inst = ec2.describe_instances(InstanceIds=[sys.argv[2]])["Reservations"][0]["Instances"][0]
primary = next(n["NetworkInterfaceId"] for n in inst["NetworkInterfaces"] if n["Attachment"]["DeviceIndex"] == 0)
got = ec2.assign_private_ip_addresses(NetworkInterfaceId=primary, SecondaryPrivateIpAddressCount=int(sys.argv[3]))
print(json.dumps([a["PrivateIpAddress"] for a in got["AssignedPrivateIpAddresses"]]))
