"""A raw ADS client for tests: Python protobuf modules generated at import time from api/ with
protoc --python_out into a temp dir, and python3-grpcio generic streams (no generated stubs)."""
import atexit
import glob
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading

import grpc

SRC = os.environ.get("WEFT_SRC", os.path.join(os.path.dirname(__file__), "../../.."))
_gen = tempfile.mkdtemp(prefix="weft-pb-")
atexit.register(shutil.rmtree, _gen, True)
_api = os.path.join(SRC, "api")
_protos = [os.path.relpath(p, _api) for p in glob.glob(os.path.join(_api, "**/*.proto"), recursive=True)]
subprocess.run(["protoc", "-I" + _api, "-I/usr/include", "--python_out=" + _gen] + _protos,
               check=True)
sys.path.insert(0, _gen)

from envoy.service.discovery.v3 import discovery_pb2 as disc  # noqa: E402
from envoy.config.cluster.v3 import cluster_pb2  # noqa: E402,F401
from envoy.config.listener.v3 import listener_pb2  # noqa: E402,F401
from envoy.config.route.v3 import route_pb2  # noqa: E402,F401
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: E402,F401

PFX = "type.googleapis.com/"
CDS = PFX + "envoy.config.cluster.v3.Cluster"
EDS = PFX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LDS = PFX + "envoy.config.listener.v3.Listener"
RDS = PFX + "envoy.config.route.v3.RouteConfiguration"
SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
MSG = {CDS: cluster_pb2.Cluster, EDS: endpoint_pb2.ClusterLoadAssignment,
       LDS: listener_pb2.Listener, RDS: route_pb2.RouteConfiguration}


def node(node_id, labels=None, namespace=None, **meta):
    n = disc.DiscoveryRequest().node
    n.id = node_id
    if labels:
        n.metadata.fields["LABELS"].struct_value.update(labels)
    if namespace:
        n.metadata.fields["NAMESPACE"].string_value = namespace
    for k, v in meta.items():
        n.metadata.fields[k].string_value = v
    return n


def unpack(any_msg):
    m = MSG[any_msg.type_url]()
    m.ParseFromString(any_msg.value)
    return m


class Stream:
    """One ADS stream. send() queues a request; recv(timeout) returns the next response or None."""

    def __init__(self, port, delta=False):
        self.ch = grpc.insecure_channel("127.0.0.1:%d" % port)
        self.req = queue.Queue()
        self.resp = queue.Queue()
        self.delta = delta
        path = DELTA if delta else SOTW
        reqt = disc.DeltaDiscoveryRequest if delta else disc.DiscoveryRequest
        respt = disc.DeltaDiscoveryResponse if delta else disc.DiscoveryResponse
        call = self.ch.stream_stream(path, request_serializer=reqt.SerializeToString,
                                     response_deserializer=respt.FromString)
        self.call = call(self._requests(), timeout=120)
        self.error = None
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _requests(self):
        while True:
            r = self.req.get()
            if r is None:
                return
            yield r

    def _read(self):
        try:
            for r in self.call:
                self.resp.put(r)
        except grpc.RpcError as e:
            self.error = e
        self.resp.put(None)

    def send(self, **kw):
        r = (disc.DeltaDiscoveryRequest if self.delta else disc.DiscoveryRequest)()
        for k, v in kw.items():
            if k == "node":
                r.node.CopyFrom(v)
            elif k == "error":
                r.error_detail.code = 3
                r.error_detail.message = v
            elif k == "initial_resource_versions":
                for a, b in v.items():
                    r.initial_resource_versions[a] = b
            elif isinstance(v, (list, tuple)):
                getattr(r, k).extend(v)
            else:
                setattr(r, k, v)
        self.req.put(r)

    def recv(self, timeout=5.0):
        try:
            return self.resp.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self):
        self.req.put(None)
        self.call.cancel()
        self.ch.close()
