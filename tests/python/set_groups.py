"""Change the security groups of an instance's primary ENI on the emulator, as an operator would.
Usage: set_groups.py EC2_ENDPOINT INSTANCE_ID GROUP [GROUP ...]; prints the ENI ID as JSON."""
import json
import sys

import emu

ec2 = emu.ec2_client(sys.argv[1])
primary = emu.primary_eni(ec2, sys.argv[2])
ec2.modify_network_interface_attribute(NetworkInterfaceId=primary, Groups=sys.argv[3:])
print(json.dumps(primary))
