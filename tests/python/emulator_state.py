"""Print, as JSON, what EC2 (the emulator) holds for one instance: {eni_id: {"ips": [...],
"prefixes": [...], "ipv6_prefixes": [...], "tags": {...}, "delete_on_termination": bool, "device": N, "groups": [...], "subnet": ID}} for its attached ENIs, plus
"available": [ids of unattached ENIs]. Usage: emulator_state.py EC2_ENDPOINT INSTANCE_ID"""
import json
import sys

import emu

# The emulator may be injecting errors: retry through them.
ec2 = emu.ec2_client(sys.argv[1], attempts=30)
out = {"attached": {}, "available": []}
for page in ec2.get_paginator("describe_network_interfaces").paginate():
    for e in page["NetworkInterfaces"]:
        a = e.get("Attachment")
        if a and a.get("InstanceId") == sys.argv[2]:
            out["attached"][e["NetworkInterfaceId"]] = {
                "ips": sorted(x["PrivateIpAddress"] for x in e["PrivateIpAddresses"] if not x["Primary"]),
                "prefixes": sorted(p["Ipv4Prefix"] for p in e.get("Ipv4Prefixes", [])),
                "ipv6_prefixes": sorted(p["Ipv6Prefix"] for p in e.get("Ipv6Prefixes", [])),
                "tags": {t["Key"]: t["Value"] for t in e.get("TagSet", [])},
                "delete_on_termination": a.get("DeleteOnTermination"),
                "device": a.get("DeviceIndex"),
                "groups": sorted(g["GroupId"] for g in e.get("Groups", [])),
                "subnet": e["SubnetId"],
            }
        elif e["Status"] == "available":
            out["available"].append(e["NetworkInterfaceId"])
print(json.dumps(out))
