"""Change the security groups of an instance's primary ENI on the emulator, as an operator would.
Usage: set_groups.py EC2_ENDPOINT INSTANCE_ID GROUP [GROUP ...]; prints the ENI ID as JSON."""
import json
import sys

import boto3

ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="emulator", aws_secret_access_key="emulator")
inst = ec2.describe_instances(InstanceIds=[sys.argv[2]])["Reservations"][0]["Instances"][0]
primary = next(n["NetworkInterfaceId"] for n in inst["NetworkInterfaces"] if n["Attachment"]["DeviceIndex"] == 0)
ec2.modify_network_interface_attribute(NetworkInterfaceId=primary, Groups=sys.argv[3:])
print(json.dumps(primary))
