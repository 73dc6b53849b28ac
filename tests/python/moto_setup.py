"""Create a VPC, subnet, security group and instance on a moto server; print their IDs as JSON.
Usage: moto_setup.py ENDPOINT"""
import json
import sys

import boto3

ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.10.0.0/20", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
# A second subnet of the AZ tagged for the CNI: discovery prefers it (more free addresses).
extra = ec2.create_subnet(VpcId=vpc, CidrBlock="10.10.16.0/20", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
ec2.create_tags(Resources=[extra], Tags=[{"Key": "kubernetes.io/role/cni", "Value": "1"}])
sg = ec2.create_security_group(GroupName="nodes", Description="nodes", VpcId=vpc)["GroupId"]
image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
inst = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.large",
                         SubnetId=subnet, SecurityGroupIds=[sg])["Instances"][0]["InstanceId"]
print(json.dumps({"vpc": vpc, "subnet": subnet, "extra_subnet": extra, "sg": sg, "instance": inst}))
