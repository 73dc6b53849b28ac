"""Detach an ENI from an instance on the emulator, as an operator would.
Usage: detach_eni.py EC2_ENDPOINT INSTANCE_ID ENI_ID; prints the attachment ID as JSON."""
import json
import sys

import emu

ec2 = emu.ec2_client(sys.argv[1])
eni = ec2.describe_network_interfaces(NetworkInterfaceIds=[sys.argv[3]])["NetworkInterfaces"][0]
if eni["Attachment"]["InstanceId"] != sys.argv[2]:
    sys.exit(f"{sys.argv[3]} is not attached to {sys.argv[2]}")
ec2.detach_network_interface(AttachmentId=eni["Attachment"]["AttachmentId"])
print(json.dumps(eni["Attachment"]["AttachmentId"]))
