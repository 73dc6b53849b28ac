"""Print one IMDSv2 meta-data path (token first). Usage: imds_get.py IMDS_ENDPOINT PATH"""
import sys
import urllib.request

base, path = sys.argv[1:3]
tok = urllib.request.urlopen(
    urllib.request.Request(
        base + "/latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
    )
).read().decode()
r = urllib.request.Request(base + "/latest/meta-data/" + path, headers={"X-aws-ec2-metadata-token": tok})
print(urllib.request.urlopen(r).read().decode())
