#!/usr/bin/python3
"""weftd push convergence under many ADS clients: CLIENTS simulated sidecars (grpc.aio, one
process, spread over connections) subscribe to CDS and LDS (wildcard) and ACK every response;
then ROUNDS config changes (a new Service and WorkloadEntry file each) are made and, per round,
the time from the file change to each client receiving the new CDS version is recorded.
Responses are not decoded beyond the top-level version/type/nonce fields.

usage: xds_load.py WEFTD_BIN WORKDIR CLIENTS SERVICES ROUNDS
prints: key=value lines (setup_s, rss_kib, conv_p50_ms, conv_p99_ms, conv_max_ms, bytes/push)."""
import asyncio
import os
import socket
import subprocess
import sys
import time

import grpc

SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
STREAMS_PER_CONN = 10


def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def enc_varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field(num, data):
    if isinstance(data, str):
        data = data.encode()
    return enc_varint(num << 3 | 2) + enc_varint(len(data)) + data


def top_fields(b):
    """version_info (1), type_url (4), nonce (5) of a DiscoveryResponse."""
    out = {}
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        wt = key & 7
        if wt == 2:
            n, i = varint(b, i)
            if key >> 3 in (1, 4, 5):
                out[key >> 3] = b[i:i + n].decode()
            i += n
        elif wt == 0:
            _, i = varint(b, i)
        else:
            raise ValueError("wire type %d" % wt)
    return out


def request(type_url, node_id=None, version="", nonce=""):
    b = b""
    if version:
        b += field(1, version)
    if node_id:
        b += field(2, field(1, node_id))
    b += field(4, type_url)
    if nonce:
        b += field(5, nonce)
    return b


def write_mesh(work, services):
    with open(os.path.join(work, "mesh.yaml"), "w") as f:
        for i in range(services):
            f.write("apiVersion: v1\nkind: Service\nmetadata: {name: svc%d}\nspec:\n"
                    "  clusterIP: 10.%d.%d.%d\n  ports: [{name: http, port: 8080}]\n"
                    "  selector: {app: svc%d}\n---\n" % (i, 96 + i // 65536, i // 256 % 256, i % 256, i))
            f.write("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: svc%d-a}\n"
                    "spec: {address: 10.200.%d.%d, labels: {app: svc%d}}\n---\n" % (i, i // 256 % 256, i % 256, i))


class Client:
    def __init__(self, idx):
        self.id = "sidecar~10.%d.%d.%d~c%d.default~default.svc.cluster.local" % (
            100 + idx // 65536, idx // 256 % 256, idx % 256, idx)
        self.q = asyncio.Queue()
        self.cds_version = None
        self.got = {}          # version -> arrival time
        self.bytes = 0

    async def gen(self):
        yield request(CDS, self.id)
        yield request(LDS)
        while True:
            r = await self.q.get()
            if r is None:
                return
            yield r

    async def run(self, ch, ready):
        call = ch.stream_stream(SOTW, request_serializer=None, response_deserializer=None)(self.gen())
        seen = set()
        try:
            async for raw in call:
                f = top_fields(raw)
                self.bytes += len(raw)
                t = f.get(4, "")
                if t == CDS:
                    self.cds_version = f.get(1)
                    self.got.setdefault(self.cds_version, time.time())
                seen.add(t)
                if len(seen) == 2 and not ready.done():
                    pass
                await self.q.put(request(t, version=f.get(1, ""), nonce=f.get(5, "")))
        except grpc.aio.AioRpcError:
            pass


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))] if v else float("nan")


async def main():
    weftd, work, nclients, nsvc, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    os.makedirs(work, exist_ok=True)
    write_mesh(work, nsvc)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    gport = s.getsockname()[1]
    s.close()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dport = s.getsockname()[1]
    s.close()
    log = open(os.path.join(work, "weftd.log.txt"), "w")
    proc = subprocess.Popen([weftd, "--config-dir", work, "--grpc-addr", "127.0.0.1:%d" % gport,
                             "--debug-addr", "127.0.0.1:%d" % dport, "--debounce", "100ms"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", gport), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        print("idle_rss_kib=%d" % rss_kib(proc.pid))
        opts = [("grpc.max_receive_message_length", 256 * 1024 * 1024)]
        chans = [grpc.aio.insecure_channel("127.0.0.1:%d" % gport, options=opts + [("grpc.channel_id", i)])
                 for i in range((nclients + STREAMS_PER_CONN - 1) // STREAMS_PER_CONN)]
        clients = [Client(i) for i in range(nclients)]
        ready = asyncio.get_event_loop().create_future()
        t0 = time.time()
        tasks = [asyncio.ensure_future(c.run(chans[i // STREAMS_PER_CONN], ready)) for i, c in enumerate(clients)]
        deadline = time.time() + 600
        while time.time() < deadline and any(c.cds_version is None for c in clients):
            await asyncio.sleep(0.05)
        print("setup_s=%.2f" % (time.time() - t0))
        print("connected_rss_kib=%d" % rss_kib(proc.pid))
        convs = []
        for r in range(rounds):
            before = set(v for c in clients for v in c.got)
            b0 = sum(c.bytes for c in clients)
            tmp = os.path.join(work, ".r.tmp")
            with open(tmp, "w") as f:
                f.write("apiVersion: v1\nkind: Service\nmetadata: {name: extra%d}\nspec:\n"
                        "  clusterIP: 10.250.0.%d\n  ports: [{name: http, port: 8080}]\n" % (r, r % 250 + 1))
            tc = time.time()
            os.rename(tmp, os.path.join(work, "round%d.yaml" % r))
            deadline = time.time() + 600
            while time.time() < deadline and any(c.cds_version in before for c in clients):
                await asyncio.sleep(0.01)
            arr = [(min(t for v, t in c.got.items() if v not in before) - tc) * 1000 for c in clients
                   if any(v not in before for v in c.got)]
            convs.append(arr)
            print("round=%d conv_p50_ms=%.1f conv_p99_ms=%.1f conv_max_ms=%.1f bytes=%d" % (
                r, pct(arr, 50), pct(arr, 99), max(arr) if arr else float("nan"),
                sum(c.bytes for c in clients) - b0))
            await asyncio.sleep(0.5)
        allv = [x for a in convs for x in a]
        print("conv_p50_ms=%.1f" % pct(allv, 50))
        print("conv_p99_ms=%.1f" % pct(allv, 99))
        print("loaded_rss_kib=%d" % rss_kib(proc.pid))
        # The figures are out. Tearing down a thousand grpc.aio channels can hang (it did, for
        # half an hour): stop weftd and leave without it.
        sys.stdout.flush()
        proc.terminate()
        proc.wait(30)
        os._exit(0)
    finally:
        proc.terminate()
        proc.wait(30)


asyncio.run(main())
