#!/usr/bin/env python3
"""Print, as a JSON list, the member names of a tar (plain, gzip, bz2, xz, or zstd through the
zstd CLI), in archive order, exactly as stored (after PAX/GNU long-name resolution).
PAX global headers are not members, so they are not listed."""
import json, subprocess, sys, tarfile

path = sys.argv[1]
with open(path, "rb") as f:
    magic = f.read(4)
if magic == b"\x28\xb5\x2f\xfd":
    proc = subprocess.Popen(["zstd", "-dc", path], stdout=subprocess.PIPE)
    tf = tarfile.open(fileobj=proc.stdout, mode="r|")
else:
    proc = None
    tf = tarfile.open(path, mode="r|*")
names = [m.name for m in tf]
tf.close()
if proc:
    proc.wait()
json.dump(names, sys.stdout)
