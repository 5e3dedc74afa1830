#!/usr/bin/python3
"""SDS-shaped static secrets (tls_certificate_sds_secret_configs, validation_context_sds_secret_config)
and certificate hot reload: replacing the files makes new connections see the new certificate
while an open connection keeps working; a broken file is logged and the last good certificate
keeps serving; a fixed file is picked up again."""
import os
import shutil
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa
from tlsutil import *  # noqa

pki = Pki()
c1, k1 = pki.leaf("localhost", ["DNS:localhost"], out="gen1")
c2, k2 = pki.leaf("localhost", ["DNS:localhost"], out="gen2")
cli_crt, cli_key = pki.leaf("reviews", ["URI:" + SPIFFE + "reviews"])
live_crt, live_key = pki.path("live.crt"), pki.path("live.key")
shutil.copy(c1, live_crt)
shutil.copy(k1, live_key)

be = backend("be")
admin, port = free_port(), free_port()
tls = """      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificate_sds_secret_configs: [{name: server_cert}]
            validation_context_sds_secret_config: {name: mesh_ca}
"""
secrets = """  secrets:
  - name: server_cert
    tls_certificate:
      certificate_chain: {filename: %s}
      private_key: {filename: %s}
  - name: mesh_ca
    validation_context:
      trusted_ca: {filename: %s}
      match_typed_subject_alt_names: [{san_type: URI, matcher: {prefix: "%s"}}]
""" % (live_crt, live_key, pki.ca, SPIFFE)
cfg = bootstrap(admin, listener("tls", port, [hcm_chain("tls", "be", tls=tls)]), static_cluster("be", [be])) + secrets
proxy = Proxy(cfg, admin)


ctx = ssl.create_default_context(cafile=pki.ca)
ctx.load_cert_chain(cli_crt, cli_key)


def connect(session=None):
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost",
                           session=session)


def peer_serial(s):
    return serial(ssl.DER_cert_to_PEM_cert(s.getpeercert(True)))


def request(s, path):
    s.sendall(b"GET %s HTTP/1.1\r\nhost: x\r\n\r\n" % path.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(rest) < n:
        rest += s.recv(65536)
    return head.split(b" ")[1] == b"200"


def replace(src_crt, src_key):
    # As a secret manager does: write new files next to the old ones, then rename over them.
    shutil.copy(src_crt, live_crt + ".tmp")
    shutil.copy(src_key, live_key + ".tmp")
    os.rename(live_key + ".tmp", live_key)
    os.rename(live_crt + ".tmp", live_crt)


def wait_serial(want, timeout=5.0):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        s = connect()
        got = peer_serial(s)
        s.close()
        if got == want:
            return got
        time.sleep(0.2)
    return got


check("static secrets by name serve the certificate", wait_serial(serial(c1), 1) == serial(c1))
old = connect()
check("a connection made before the reload works", request(old, "/before"))
saved = old.session  # the TLS 1.3 ticket arrived with the response

replace(c2, k2)
check("after the files change, new connections get the new certificate", wait_serial(serial(c2)) == serial(c2))
check("the connection made before still works", request(old, "/after"))
check("and still has the old certificate", peer_serial(old) == serial(c1))
old.close()
r = connect(session=saved)
check("a session from before the reload resumes (ticket keys survive it)", r.session_reused and request(r, "/resumed"))
r.close()

# A broken file: logged, and the last good certificate keeps serving.
with open(live_crt + ".tmp", "w") as f:
    f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
os.rename(live_crt + ".tmp", live_crt)
time.sleep(2.5)
s = connect()
check("broken file: the last good certificate still serves", peer_serial(s) == serial(c2) and request(s, "/broken"))
s.close()
check("broken file: the failure is logged", "reload failed" in proxy.output(), proxy.output()[-1000:])

# Fixed again: picked up.
replace(c1, k1)
check("a fixed file is picked up again", wait_serial(serial(c1)) == serial(c1))

# A certificate that does not match the key (half-written rotation) is refused too.
shutil.copy(c2, live_crt + ".tmp")
os.rename(live_crt + ".tmp", live_crt)
time.sleep(2.5)
s = connect()
check("mismatched key: the last good pair still serves", peer_serial(s) == serial(c1) and request(s, "/mismatch"))
s.close()
check("mismatched key: logged", "does not match" in proxy.output(), proxy.output()[-1000:])

check("proxy exits cleanly", proxy.stop() == 0, proxy.output()[-2000:])
finish()
