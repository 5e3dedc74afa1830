"""TLS helpers for end-to-end tests: a throw-away PKI made with the openssl CLI, TLS backends,
and openssl s_client runs. Everything lives in a temporary directory removed at exit."""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import weft  # noqa: E402

SPIFFE = "spiffe://cluster.local/ns/default/sa/"


def _run(*args):
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(args), r.stderr))
    return r.stdout


class Pki:
    """A CA and leaf certificates signed by it (EC P-256), in a temporary directory."""

    def __init__(self, name="Weft Test CA", directory=None):
        self.dir = directory or tempfile.mkdtemp(prefix="weft-tls-")
        if not directory:
            atexit.register(shutil.rmtree, self.dir, True)
        self.name = name.replace(" ", "_")
        self.ca_key = self.path(self.name + "-ca.key")
        self.ca = self.path(self.name + "-ca.crt")
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", self.ca_key, "-out", self.ca, "-days", "30", "-subj", "/CN=" + name)

    def path(self, name):
        return os.path.join(self.dir, name)

    def leaf(self, name, sans, days=30, out=None):
        """Issues a certificate with the given SANs ("DNS:x", "URI:spiffe://..."). days < 0 makes
        an expired one. Returns (cert path, key path)."""
        out = out or self.name + "-" + name
        key, csr, crt, ext = (self.path(out + s) for s in (".key", ".csr", ".crt", ".ext"))
        _run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n" % ",".join(sans))
        _run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
             "-out", crt, "-days", str(days), "-extfile", ext)
        return crt, key


def serial(cert_pem_or_path):
    """The serial number (hex) of a certificate file or PEM text."""
    if os.path.exists(cert_pem_or_path):
        return _run("openssl", "x509", "-in", cert_pem_or_path, "-noout", "-serial").strip().split("=")[1]
    r = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=cert_pem_or_path, capture_output=True,
                       text=True, timeout=10)
    return r.stdout.strip().split("=")[1] if "=" in r.stdout else None


def s_client(port, *args, data=b"", timeout=10):
    """Runs openssl s_client against 127.0.0.1:port; returns (exit code, stdout+stderr text)."""
    # With data, wait for the server to close (-ign_eof); without, stop at the end of the handshake.
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port] + (["-ign_eof"] if data else []) + list(args),
                       input=data, capture_output=True, timeout=timeout)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def tls_backend(name, cert, key, ca=None, alpn=None):
    """A backend.py that serves TLS (with client certificate verification when ca is given)."""
    env = dict(os.environ, WEFT_TLS_CERT=cert, WEFT_TLS_KEY=key)
    if ca:
        env["WEFT_TLS_CA"] = ca
    if alpn:
        env["WEFT_TLS_ALPN"] = alpn
    port = weft.free_port()
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "backend.py"), str(port), name], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    weft._procs.append(p)
    p.stdout.readline()
    weft.wait_port(port)
    return port


def downstream_tls(cert, key, ca=None, require_client=False, sans=(), alpn=(), extra=""):
    """A filter chain's transport_socket YAML (indented for a filter chain entry)."""
    y = """      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
"""
    if require_client:
        y += "          require_client_certificate: true\n"
    y += extra
    y += "          common_tls_context:\n"
    y += "            tls_certificates: [{certificate_chain: {filename: %s}, private_key: {filename: %s}}]\n" % (cert, key)
    if alpn:
        y += "            alpn_protocols: [%s]\n" % ", ".join('"%s"' % a for a in alpn)
    if ca:
        y += "            validation_context:\n              trusted_ca: {filename: %s}\n" % ca
        if sans:
            y += "              match_typed_subject_alt_names:\n"
            for t, m in sans:
                y += "              - {san_type: %s, matcher: %s}\n" % (t, m)
    return y


def upstream_tls(ca=None, cert=None, key=None, sni=None, sans=(), alpn=(), tls_params=None):
    """A cluster's transport_socket YAML (indented for a cluster entry)."""
    y = """    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
"""
    if sni:
        y += "        sni: %s\n" % sni
    y += "        common_tls_context:\n"
    if tls_params:
        y += "          tls_params: %s\n" % tls_params
    if cert:
        y += "          tls_certificates: [{certificate_chain: {filename: %s}, private_key: {filename: %s}}]\n" % (cert, key)
    if alpn:
        y += "          alpn_protocols: [%s]\n" % ", ".join('"%s"' % a for a in alpn)
    if ca:
        y += "          validation_context:\n            trusted_ca: {filename: %s}\n" % ca
        if sans:
            y += "            match_typed_subject_alt_names:\n"
            for t, m in sans:
                y += "            - {san_type: %s, matcher: %s}\n" % (t, m)
    return y


TLS_INSPECTOR = ('{name: envoy.filters.listener.tls_inspector, typed_config: {"@type": '
                 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}')
HTTP_INSPECTOR = ('{name: envoy.filters.listener.http_inspector, typed_config: {"@type": '
                  'type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector}}')


def file_log(path, fmt):
    """An access_log list entry (YAML flow style) writing fmt to path."""
    return ('{name: envoy.access_loggers.file, typed_config: {"@type": '
            'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: %s, '
            'log_format: {text_format_source: {inline_string: "%s\\n"}}}}' % (path, fmt))


def hcm_chain(stat_prefix, cluster, match=None, tls="", access_log=None, hcm_extra=""):
    """One filter chain entry with an HTTP connection manager routing everything to cluster;
    hcm_extra: more HttpConnectionManager fields (YAML lines indented by 10)."""
    y = "    - "
    if match:
        y += "filter_chain_match: %s\n      " % match
    y += """filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: %s
          http_filters: [%s]
          route_config: {virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: %s}}]}]}
""" % (stat_prefix, weft.ROUTER, cluster)
    if access_log:
        y += "          access_log: [%s]\n" % access_log
    return y + hcm_extra + tls


def tcp_chain(stat_prefix, cluster, match=None, tls="", access_log=None):
    y = "    - "
    if match:
        y += "filter_chain_match: %s\n      " % match
    y += """filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: %s
          cluster: %s
""" % (stat_prefix, cluster)
    if access_log:
        y += "          access_log: [%s]\n" % access_log
    return y + tls


def listener(name, port, chains, listener_filters=(), access_log=None, extra=""):
    y = """  - name: %s
    address: {socket_address: {address: 127.0.0.1, port_value: %d}}
""" % (name, port)
    if listener_filters:
        y += "    listener_filters: [%s]\n" % ", ".join(listener_filters)
    if access_log:
        y += "    access_log: [%s]\n" % access_log
    y += extra
    return y + "    filter_chains:\n" + "".join(chains)
