"""What the scripts that drive `vpc-cni emulate` with boto3 share: the client (dummy credentials,
the emulator checks no signature), a check that exits with a message, and an instance's primary ENI."""
import sys

import boto3
from botocore.config import Config


def ec2_client(url, attempts=None):
    """boto3's EC2 client at `url`; `attempts` sets the standard retry mode's budget."""
    config = Config(retries={"mode": "standard", "max_attempts": attempts}) if attempts else None
    return boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="emulator", aws_secret_access_key="emulator",
                        config=config)


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")


def primary_eni(ec2, instance_id):
    """The ENI at device index 0 of `instance_id`."""
    inst = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return next(n["NetworkInterfaceId"] for n in inst["NetworkInterfaces"]
                if n["Attachment"]["DeviceIndex"] == 0)
