"""A small ADS (state of the world) server for Weft's e2e tests, on Debian's python3-grpcio.

The Python protobuf modules are generated at import time from the repository's api/ with
`protoc --python_out` into a temporary directory, so the messages are exactly the ones weft-proxy
uses. One generic bidirectional-stream handler serves
/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources:

  - every DiscoveryRequest is recorded (server.requests, with the stream's number);
  - a request that opens a type, or changes its resource names, is answered at once with the
    current resources of that type (EDS/RDS/SDS filtered by the names asked for);
  - set(type, resources, version) replaces a type's resources and pushes them to every stream
    subscribed to it; an ACK or NACK is not answered.
"""
import glob
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
API = os.path.normpath(os.path.join(HERE, "../../../api"))

_gen = tempfile.mkdtemp(prefix="weft-pb-")
_protos = [os.path.relpath(p, API) for p in glob.glob(os.path.join(API, "**/*.proto"), recursive=True)
           if p.startswith(os.path.join(API, "envoy")) or p.startswith(os.path.join(API, "google"))]
subprocess.run(["protoc", "-I", API, "--python_out", _gen] + _protos, check=True)
sys.path.insert(0, _gen)
import atexit  # noqa: E402

atexit.register(shutil.rmtree, _gen, True)

import grpc  # noqa: E402
from envoy.service.discovery.v3 import discovery_pb2  # noqa: E402
from envoy.config.cluster.v3 import cluster_pb2  # noqa: E402,F401
from envoy.config.listener.v3 import listener_pb2  # noqa: E402,F401
from envoy.config.route.v3 import route_pb2  # noqa: E402,F401
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: E402,F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: E402,F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: E402,F401
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2  # noqa: E402,F401
from google.protobuf import json_format  # noqa: E402
from google.protobuf import any_pb2  # noqa: E402

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SDS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
MSG = {CDS: cluster_pb2.Cluster, EDS: endpoint_pb2.ClusterLoadAssignment, LDS: listener_pb2.Listener,
       RDS: route_pb2.RouteConfiguration, SDS: secret_pb2.Secret}
SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


def from_dict(type_url, d):
    """A resource message from its proto3-JSON dict form (Any fields with "@type")."""
    return json_format.ParseDict(d, MSG[type_url]())


def name_of(type_url, m):
    return m.cluster_name if type_url == EDS else m.name


class _Stream:
    def __init__(self, server, n):
        self.server, self.n = server, n
        self.out = queue.Queue()
        self.subs = {}   # type -> names (tuple) asked for
        self.open = True

    def respond(self, type_url):
        with self.server.lock:
            version, res = self.server.versions.get(type_url, ""), dict(self.server.resources.get(type_url, {}))
            self.server.nonce += 1
            nonce = str(self.server.nonce)
        names = self.subs.get(type_url, ())
        if type_url in (EDS, RDS, SDS):
            res = {k: v for k, v in res.items() if k in names}
        r = discovery_pb2.DiscoveryResponse(version_info=version, type_url=type_url, nonce=nonce)
        for m in res.values():
            a = any_pb2.Any()
            a.Pack(m)
            r.resources.append(a)
        self.out.put(r)


class AdsServer:
    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.resources, self.versions = {}, {}
        self.requests = []          # (stream number, DiscoveryRequest)
        self.streams = []
        self.nonce = 0
        self.server = None

    def start(self):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handler = grpc.stream_stream_rpc_method_handler(
            self._stream, request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=discovery_pb2.DiscoveryResponse.SerializeToString)
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"StreamAggregatedResources": handler}),))
        self.server.add_insecure_port("127.0.0.1:%d" % self.port)
        self.server.start()
        return self

    def stop(self):
        for s in list(self.streams):
            s.open = False
            s.out.put(None)
        if self.server:
            self.server.stop(0).wait(5)
            self.server = None

    def set(self, type_url, msgs, version):
        """Replaces the resources of a type (messages or dicts) and pushes them."""
        msgs = [from_dict(type_url, m) if isinstance(m, dict) else m for m in msgs]
        with self.lock:
            self.resources[type_url] = {name_of(type_url, m): m for m in msgs}
            self.versions[type_url] = version
            streams = [s for s in self.streams if s.open and type_url in s.subs]
        for s in streams:
            s.respond(type_url)

    def push_raw(self, type_url, any_list, version):
        """Sends a response with these Any messages to every stream (not stored): bad resources."""
        with self.lock:
            self.nonce += 1
            nonce = str(self.nonce)
            streams = [s for s in self.streams if s.open and type_url in s.subs]
        for s in streams:
            r = discovery_pb2.DiscoveryResponse(version_info=version, type_url=type_url, nonce=nonce)
            r.resources.extend(any_list)
            s.out.put(r)
        return nonce

    def _stream(self, request_iterator, context):
        with self.lock:
            st = _Stream(self, len(self.streams) + 1)
            self.streams.append(st)

        def reader():
            try:
                for rq in request_iterator:
                    with self.lock:
                        self.requests.append((st.n, rq))
                    names = tuple(sorted(rq.resource_names))
                    if rq.type_url not in st.subs or st.subs[rq.type_url] != names:
                        st.subs[rq.type_url] = names
                        st.respond(rq.type_url)
            except Exception:
                pass
            st.open = False
            st.out.put(None)

        threading.Thread(target=reader, daemon=True).start()
        while True:
            r = st.out.get()
            if r is None or not context.is_active():
                break
            yield r
        st.open = False

    def wait_request(self, pred, timeout=5.0):
        """Waits for a recorded request matching pred(stream_number, request); returns it or None."""
        import time
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                for n, rq in self.requests:
                    if pred(n, rq):
                        return rq
            time.sleep(0.02)
        return None


SIDECAR_NODE = """id: sidecar~127.0.0.1~test-1.default~default.svc.cluster.local
cluster: test.default
metadata: {ISTIO_VERSION: "1.22.0", NAMESPACE: default}"""


def bootstrap(admin_port, ads_port, node=SIDECAR_NODE):
    """A weft-proxy bootstrap that takes CDS and LDS (and so EDS, RDS, SDS) over ADS from the
    static cluster xds-grpc (HTTP/2 to 127.0.0.1:ads_port), initial_fetch_timeout 5s. node: the
    node's fields as YAML lines (an Istio-like sidecar by default)."""
    import weft
    return weft.ads_bootstrap(admin_port, ads_port, node, source_extra=", initial_fetch_timeout: 5s")
