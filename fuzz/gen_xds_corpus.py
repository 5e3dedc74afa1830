#!/usr/bin/python3
"""Writes the seed corpus of fuzz_xds_response: real DiscoveryResponses (serialized with the
protobuf modules generated from api/, resources as in tests/e2e/test_xds_client.py), each
prefixed by its 4-byte big-endian length as the fuzz target reads them."""
import os, struct, sys
ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests/e2e/lib"))
sys.path.insert(0, os.path.join(ROOT, "tests/e2e"))
import ads_server as A
from google.protobuf import any_pb2
from envoy.service.discovery.v3 import discovery_pb2
exec("import time\nHCM =" + open(os.path.join(ROOT, "tests/e2e/test_xds_client.py")).read().split("be_a, be_b")[0].split("HCM =", 1)[1])
def resp(t, msgs, v, nonce):
    r = discovery_pb2.DiscoveryResponse(version_info=v, type_url=t, nonce=nonce)
    for m in msgs:
        a = any_pb2.Any(); a.Pack(A.from_dict(t, m)); r.resources.append(a)
    b = r.SerializeToString()
    return struct.pack(">I", len(b)) + b
out = os.path.join(ROOT, "fuzz/corpus/fuzz_xds_response")
full = [resp(A.CDS, [cluster("be", "be-svc")], "c1", "1"), resp(A.EDS, [cla("be-svc", [8080, 8081])], "e1", "2"),
        resp(A.LDS, [listener("l1", 18080, "r1")], "l1", "3"), resp(A.RDS, [routes("r1", "be", "v1")], "r1", "4")]
open(os.path.join(out, "full_sync"), "wb").write(b"".join(full))
open(os.path.join(out, "cds_only"), "wb").write(full[0])
open(os.path.join(out, "bad_route"), "wb").write(b"".join(full[:3]) + resp(A.RDS, [routes("r1", "nope", "x")], "r2", "5"))
open(os.path.join(out, "listener_then_routes"), "wb").write(full[2] + full[3] + full[0] + full[1])
open(os.path.join(out, "two_clusters"), "wb").write(resp(A.CDS, [cluster("a", "a"), cluster("b", "")], "c", "1") + resp(A.EDS, [cla("a", [1]), cla("b", [2])], "e", "2"))
