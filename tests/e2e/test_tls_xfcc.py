#!/usr/bin/python3
"""x-forwarded-client-cert as Envoy's HttpConnectionManager handles it: every
forward_client_cert_details mode on mTLS connections (HTTP/1.1 and HTTP/2), the exact element
(By, Hash, Cert, Chain, Subject, URI, DNS in Envoy's order), Istio's inbound sidecar setting
(APPEND_FORWARD with subject, dns and uri), and the header dropped on connections without a
client certificate (plaintext, or TLS without one)."""
import hashlib
import json
import os
import ssl
import sys
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
from tlsutil import *  # noqa

pki = Pki()
srv_crt, srv_key = pki.leaf("localhost", ["DNS:localhost", "URI:" + SPIFFE + "server"])
cli_crt, cli_key = pki.leaf("reviews", ["URI:" + SPIFFE + "reviews", "DNS:reviews.default.svc", "DNS:reviews"])
cli_pem = open(cli_crt).read()
cli_hash = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cli_pem)).hexdigest()
cli_enc = urllib.parse.quote(cli_pem, safe="")
BY = "By=" + SPIFFE + "server;Hash=" + cli_hash
INCOMING = 'By=spiffe://cluster.local/ns/default/sa/gateway;Hash=00ff;URI=spiffe://x'

be = backend("be")
admin = free_port()
ALL = "{cert: true, chain: true, subject: true, uri: true, dns: true}"
ISTIO = "{subject: true, dns: true, uri: true}"
modes = [  # (name, forward_client_cert_details, set_current_client_cert_details)
    ("default", None, None),
    ("sanitize", "SANITIZE", ALL),
    ("forward", "FORWARD_ONLY", ALL),
    ("append", "APPEND_FORWARD", None),
    ("istio", "APPEND_FORWARD", ISTIO),
    ("set", "SANITIZE_SET", ALL),
    ("always", "ALWAYS_FORWARD_ONLY", ALL),
]
ports = {}
listeners = ""


def hcm_extra(mode, details):
    y = ""
    if mode:
        y += "          forward_client_cert_details: %s\n" % mode
    if details:
        y += "          set_current_client_cert_details: %s\n" % details
    return y


for name, mode, details in modes:
    ports[name] = free_port()
    tls = downstream_tls(srv_crt, srv_key, ca=pki.ca, require_client=True, alpn=["h2", "http/1.1"])
    listeners += listener(name, ports[name], [hcm_chain(name, "be", tls=tls, hcm_extra=hcm_extra(mode, details))])
# Connections without a client certificate: plaintext, and TLS where one is optional.
for name, tls in (("plain", ""), ("oneway", downstream_tls(srv_crt, srv_key, ca=pki.ca))):
    for mode in ("SANITIZE", "FORWARD_ONLY", "APPEND_FORWARD", "SANITIZE_SET", "ALWAYS_FORWARD_ONLY"):
        key = "%s-%s" % (name, mode)
        ports[key] = free_port()
        listeners += listener(key, ports[key], [hcm_chain(key.replace("-", "_"), "be", tls=tls,
                                                          hcm_extra=hcm_extra(mode, ALL))])
proxy = Proxy(bootstrap(admin, listeners, static_cluster("be", [be])), admin)


def xfcc(port, *args, incoming=INCOMING, client_cert=True, scheme="https"):
    """The x-forwarded-client-cert the backend received (None when absent)."""
    opts = ["--resolve", "localhost:%d:127.0.0.1" % port]
    if scheme == "https":
        opts += ["--cacert", pki.ca]
        if client_cert:
            opts += ["--cert", cli_crt, "--key", cli_key]
    if incoming is not None:
        opts += ["-H", "x-forwarded-client-cert: " + incoming]
    st, _, body = curl("%s://localhost:%d/x" % (scheme, port), *opts, *args)
    if st != 200:
        return "status %d: %s" % (st, body[:300])
    return json.loads(body)["headers"].get("x-forwarded-client-cert")


subject = 'Subject="CN=reviews"'
uri = "URI=" + SPIFFE + "reviews"
dns = "DNS=reviews.default.svc;DNS=reviews"
# curl (OpenSSL) sends the client chain it builds from --cacert: leaf, then the CA.
chain = cli_enc + urllib.parse.quote(open(pki.ca).read(), safe="")
full = ";".join([BY, 'Cert="%s"' % cli_enc, 'Chain="%s"' % chain, subject, uri, dns])
istio = ";".join([BY, subject, uri, dns])

for proto in ("--http1.1", "--http2"):
    p = "h2" if proto == "--http2" else "h1"
    v = xfcc(ports["default"], proto)
    check("%s: default (SANITIZE) removes an incoming XFCC" % p, v is None, v)
    v = xfcc(ports["sanitize"], proto)
    check("%s: SANITIZE removes it" % p, v is None, v)
    v = xfcc(ports["forward"], proto)
    check("%s: FORWARD_ONLY passes it on unchanged" % p, v == INCOMING, v)
    v = xfcc(ports["append"], proto)
    check("%s: APPEND_FORWARD without details appends By and Hash" % p, v == INCOMING + "," + BY, v)
    v = xfcc(ports["append"], proto, incoming=None)
    check("%s: APPEND_FORWARD without an incoming header sets the element" % p, v == BY, v)
    v = xfcc(ports["istio"], proto)
    check("%s: Istio inbound (APPEND_FORWARD, subject/dns/uri)" % p, v == INCOMING + "," + istio, (v, istio))
    v = xfcc(ports["set"], proto)
    check("%s: SANITIZE_SET replaces it with every field in Envoy's order" % p, v == full, (v, full))
    v = xfcc(ports["always"], proto)
    check("%s: ALWAYS_FORWARD_ONLY passes it on" % p, v == INCOMING, v)

# Two incoming XFCC lines are appended to as one comma-separated value.
st, _, body = curl("https://localhost:%d/x" % ports["istio"], "--resolve", "localhost:%d:127.0.0.1" % ports["istio"],
                   "--cacert", pki.ca, "--cert", cli_crt, "--key", cli_key,
                   "-H", "x-forwarded-client-cert: By=a", "-H", "x-forwarded-client-cert: By=b")
v = json.loads(body)["headers"].get("x-forwarded-client-cert") if st == 200 else body
check("APPEND_FORWARD joins repeated incoming lines and appends", v == "By=a,By=b," + istio, v)

# No client certificate: only ALWAYS_FORWARD_ONLY keeps the header (Envoy drops it otherwise).
for name in ("plain", "oneway"):
    for mode in ("SANITIZE", "FORWARD_ONLY", "APPEND_FORWARD", "SANITIZE_SET", "ALWAYS_FORWARD_ONLY"):
        port = ports["%s-%s" % (name, mode)]
        v = xfcc(port, scheme="http" if name == "plain" else "https", client_cert=False)
        want = INCOMING if mode == "ALWAYS_FORWARD_ONLY" else None
        check("%s connection, %s: %s" % (name, mode, "kept" if want else "removed"), v == want, v)

# Keep-alive: several requests on one mTLS connection carry the same element.
outs = []
for proto in ("--http1.1", "--http2"):
    args = ["--resolve", "localhost:%d:127.0.0.1" % ports["set"], "--cacert", pki.ca, "--cert", cli_crt,
            "--key", cli_key, proto, "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n"]
    r = subprocess.run(["curl", "-sS"] + args + ["https://localhost:%d/a" % ports["set"],
                                                 "https://localhost:%d/b" % ports["set"]],
                       capture_output=True, text=True, timeout=20)
    outs.append(r.stdout.split())
check("keep-alive requests reuse one connection (h1, h2)", outs == [["1", "0"], ["1", "0"]], outs)

bad = "          forward_client_cert_details: BOGUS\n"
rc, out = run_proxy_expect_fail(bootstrap(admin, listener("bad", free_port(), [hcm_chain("bad", "be", hcm_extra=bad)]),
                                          static_cluster("be", [be])))
check("unknown forward_client_cert_details is a config error naming the field",
      rc != 0 and "forward_client_cert_details" in out, out)

rc = proxy.stop()
check("weft-proxy exits cleanly (ASan: no leak or error)", rc == 0 and "Sanitizer" not in proxy.output()
      and "runtime error" not in proxy.output(), proxy.output()[-3000:])
finish()
