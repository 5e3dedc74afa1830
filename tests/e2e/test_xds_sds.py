#!/usr/bin/python3
"""SDS over ADS in weft-proxy: TLS contexts whose secrets come from the ADS stream
(`sds_config: {ads: {}}`), with Istio's names: a listener serving the workload certificate
`default` and checking clients with `ROOTCA` (combined_validation_context, as Istio's inbound),
a cluster presenting `default` and checking the server with `ROOTCA` (ISTIO_MUTUAL). Checked:
the Secret subscription by name, warming (nothing is served until the secrets arrive, LDS waits
for the clusters' secrets), a rotated `default` for new connections while an open connection
keeps working, a rotated `ROOTCA` that trusts a new CA, and a bad secret NACKed."""
import http.client
import json
import os
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import weft  # noqa: E402
from weft import check, finish  # noqa: E402
import ads_server  # noqa: E402
from ads_server import CDS, LDS, SDS  # noqa: E402
from tlsutil import Pki, SPIFFE, serial, s_client, tls_backend  # noqa: E402

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
ADS = {"ads": {}, "resource_api_version": "V3"}
SHORT = {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "1s"}

pki, pki2 = Pki(), Pki("Second CA")
srv1 = pki.leaf("localhost", ["DNS:localhost", "URI:" + SPIFFE + "server"])
srv2 = pki.leaf("localhost", ["DNS:localhost", "URI:" + SPIFFE + "server"], out="rotated")
cli = pki.leaf("client", ["URI:" + SPIFFE + "client"])
cli2 = pki2.leaf("client2", ["URI:" + SPIFFE + "client"])
read = lambda path: open(path).read()


def cert_secret(name, pair):
    return {"name": name, "tls_certificate": {"certificate_chain": {"inline_string": read(pair[0])},
                                              "private_key": {"inline_string": read(pair[1])}}}


def ca_secret(name, *cas):
    return {"name": name, "validation_context": {"trusted_ca": {"inline_string": "".join(read(c) for c in cas)}}}


def tls_cluster(name, port):
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": TLS + "UpstreamTlsContext", "common_tls_context": {
                    "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": ADS}],
                    "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": ADS}}}}}


def tls_listener(name, port, cluster, source=ADS):
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{
                "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                    "@type": HCM, "stat_prefix": name,
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                        {"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}}],
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": TLS + "DownstreamTlsContext", "require_client_certificate": True,
                    "common_tls_context": {
                        "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": source}],
                        "combined_validation_context": {
                            "default_validation_context": {"match_typed_subject_alt_names": [
                                {"san_type": "URI", "matcher": {"prefix": "spiffe://cluster.local/"}}]},
                            "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": source}}}}}}]}


def https(port, client, conn=None):
    """GET / over TLS with a client certificate; returns (status, connection) (conn: reuse it)."""
    if conn is None:
        ctx = ssl.create_default_context(cafile=pki.ca)
        ctx.check_hostname = False
        ctx.load_cert_chain(*client)
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    conn.request("GET", "/")
    r = conn.getresponse()
    r.read()
    return r.status, conn


def try_https(port, client):
    try:
        return https(port, client)[0]
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return 0


def served_serial(port):
    _, out = s_client(port, "-cert", cli[0], "-key", cli[1], "-servername", "localhost", "-showcerts")
    pem = out[out.find("-----BEGIN CERTIFICATE-----"):out.find("-----END CERTIFICATE-----") + 25]
    return serial(pem) if "BEGIN" in pem else None


def wait_for(fn, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    return None


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# The upstream demands a client certificate from the CA: only `default` gets through.
be = tls_backend("be", srv1[0], srv1[1], ca=pki.ca)
ads_port, admin, lport = (weft.free_port() for _ in range(3))
ads = ads_server.AdsServer(ads_port).start()
ads.set(CDS, [tls_cluster("be-tls", be)], "c1")
ads.set(LDS, [tls_listener("in", lport, "be-tls")], "l1")
proxy = weft.Proxy(ads_server.bootstrap(admin, ads_port), admin, wait=False)


def ready_status():
    try:
        return proxy.admin("/ready")[0]
    except OSError:
        return None



# --- warming: the secrets are asked for by name; nothing is served until they come ---
sds_rq = ads.wait_request(lambda n, rq: rq.type_url == SDS and not rq.response_nonce, 5)
check("SDS asks for the clusters' secrets by name", sds_rq is not None and sorted(sds_rq.resource_names) == ["ROOTCA", "default"]
      and sds_rq.type_url == SDS, sds_rq)
time.sleep(0.5)
with ads.lock:
    early_lds = [rq for _, rq in ads.requests if rq.type_url == LDS]
check("LDS waits until the clusters' secrets arrive (cluster warming)", not early_lds, early_lds)
check("no listener while warming, and /ready is not 200", not listening(lport) and ready_status() != 200)

ads.set(SDS, [cert_secret("default", srv1), ca_secret("ROOTCA", pki.ca)], "s1")
check("listener served once the secrets arrived", wait_for(lambda: listening(lport)), proxy.output()[-2000:])
check("/ready once the secrets arrived", wait_for(lambda: ready_status() == 200))
st = wait_for(lambda: try_https(lport, cli) == 200 and 200)
check("mTLS in (default + ROOTCA) and ISTIO_MUTUAL-style TLS out work", st == 200, proxy.output()[-2000:])
check("the SDS response is ACKed with its version", ads.wait_request(
    lambda n, rq: rq.type_url == SDS and rq.version_info == "s1" and rq.response_nonce and not rq.HasField("error_detail"), 3))
check("the listener serves the certificate of secret default", served_serial(lport) == serial(srv1[0]))
check("a client from an untrusted CA is refused (ROOTCA)", try_https(lport, cli2) == 0)

# --- rotation of default: new connections get the new certificate; an open one keeps working ---
st, keep = https(lport, cli)
ads.set(SDS, [cert_secret("default", srv2), ca_secret("ROOTCA", pki.ca)], "s2")
rotated = wait_for(lambda: served_serial(lport) == serial(srv2[0]))
check("rotated default is served to new connections", rotated, proxy.output()[-1500:])
try:
    st2 = https(lport, cli, keep)[0]
except (OSError, http.client.HTTPException) as e:
    st2 = str(e)
check("a connection opened before the rotation keeps working", st == 200 and st2 == 200, (st, st2))
check("new connections after the rotation work end to end", try_https(lport, cli) == 200)

# --- rotation of ROOTCA: a second CA becomes trusted ---
ads.set(SDS, [cert_secret("default", srv2), ca_secret("ROOTCA", pki.ca, pki2.ca)], "s3")
check("rotated ROOTCA trusts the new CA", wait_for(lambda: try_https(lport, cli2) == 200), proxy.output()[-1500:])

# --- a secret that does not build is NACKed and the last good one stays ---
bad = cert_secret("default", (srv1[0], cli[1]))  # key of another certificate
ads.set(SDS, [bad, ca_secret("ROOTCA", pki.ca, pki2.ca)], "s4")
nack = ads.wait_request(lambda n, rq: rq.type_url == SDS and rq.HasField("error_detail"), 5)
check("a bad Secret is NACKed with error_detail naming it", nack is not None and nack.error_detail.message.startswith("Secret 'default': ")
      and "private_key does not match" in nack.error_detail.message,
      nack)
_, dump = proxy.admin("/config_dump")
sec = [c for c in json.loads(dump)["configs"] if c.get("@type", "").endswith("SecretsConfigDump")]
names = sorted(e["name"] for e in sec[0].get("dynamic_active_secrets", [])) if sec else None
check("config_dump: SecretsConfigDump.dynamic_active_secrets, private keys redacted",
      names == ["ROOTCA", "default"] and "PRIVATE KEY" not in dump and "[redacted]" in json.dumps(sec), names)
st = proxy.stats()
check("stats per secret, as Envoy: sds.<name>.update_success / update_rejected",
      st.get("sds.default.update_success", 0) >= 4 and st.get("sds.ROOTCA.update_success", 0) >= 4
      and st.get("sds.default.update_rejected") == 1 and st.get("sds.default.update_attempt", 0) >= 5,
      {k: v for k, v in st.items() if k.startswith("sds.")})
check("the last good secrets keep serving after the NACK", served_serial(lport) == serial(srv2[0])
      and try_https(lport, cli) == 200)

rc = proxy.stop()
check("weft-proxy exits cleanly (ASan: no leak or error)", rc == 0 and "Sanitizer" not in proxy.output()
      and "runtime error" not in proxy.output(), proxy.output()[-3000:])
ads.stop()

# --- a secret that never comes: after sds_config.initial_fetch_timeout the listener goes live and
# refuses TLS ("Secret is not supplied by SDS"), as Envoy's does ---
ads2_port, admin2, lport2 = (weft.free_port() for _ in range(3))
ads2 = ads_server.AdsServer(ads2_port).start()
plain = tls_cluster("plain", be)
del plain["transport_socket"]
ads2.set(CDS, [plain], "c1")
ads2.set(LDS, [tls_listener("never", lport2, "plain", SHORT)], "l1")
t0 = time.time()
proxy2 = weft.Proxy(ads_server.bootstrap(admin2, ads2_port), admin2, wait=False)
up = wait_for(lambda: listening(lport2), 10)
check("after initial_fetch_timeout (1s) the listener is live without its secret", up and time.time() - t0 >= 0.9,
      "%.2fs" % (time.time() - t0))
check("...and refuses TLS on it", try_https(lport2, cli) == 0)
st2 = proxy2.stats()
check("sds.<name>.init_fetch_timeout counted", st2.get("sds.default.init_fetch_timeout", 0) >= 1
      and st2.get("sds.ROOTCA.init_fetch_timeout", 0) >= 1, {k: v for k, v in st2.items() if k.startswith("sds.")})
rc2 = proxy2.stop()
ads2.stop()
check("second weft-proxy exits cleanly", rc2 == 0 and "Sanitizer" not in proxy2.output(), proxy2.output()[-3000:])
finish()
