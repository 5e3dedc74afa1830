#!/usr/bin/python3
"""weft-proxy as an Envoy user's HTTP/1.1 front proxy: every routing feature of route_config,
driven with curl against real backends."""
import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from weft import *  # noqa

a, b, c = backend("a"), backend("b"), backend("c")
admin, port = free_port(), free_port()

routes = """
name: local
request_headers_to_add:
- header: {key: x-from-config, value: rc}
response_headers_to_add:
- header: {key: x-config-resp, value: rc}
virtual_hosts:
- name: exact
  domains: ["exact.example.com", "exact.example.com:8080"]
  routes:
  - match: {prefix: "/"}
    route: {cluster: b}
- name: suffix
  domains: ["*.wild.com"]
  routes:
  - match: {prefix: "/"}
    route: {cluster: c}
- name: prefix
  domains: ["api.*"]
  routes:
  - match: {prefix: "/"}
    direct_response: {status: 200, body: {inline_string: "prefix-wildcard"}}
- name: default
  domains: ["*"]
  request_headers_to_add:
  - header: {key: x-from-vhost, value: vh}
  routes:
  - match: {path: "/exact"}
    route: {cluster: b}
  - match: {safe_regex: {regex: "/re/[0-9]+"}}
    route: {cluster: c}
  - match: {prefix: "/CaSe", case_sensitive: false}
    route: {cluster: c}
  - match: {path_separated_prefix: "/sep"}
    route: {cluster: c}
  - match:
      prefix: "/hdr"
      headers:
      - name: x-version
        string_match: {exact: v2}
    route: {cluster: b}
  - match:
      prefix: "/hdr"
      headers:
      - name: x-present
        present_match: true
    route: {cluster: c}
  - match:
      prefix: "/hdr"
    route: {cluster: a}
  - match:
      prefix: "/query"
      query_parameters:
      - name: user
        string_match: {exact: jason}
    route: {cluster: b}
  - match: {prefix: "/rewrite/"}
    route: {cluster: a, prefix_rewrite: "/new/"}
  - match: {prefix: "/regex-rewrite/"}
    route:
      cluster: a
      regex_rewrite: {pattern: {regex: "^/regex-rewrite/(\\\\w+)/(\\\\w+)$"}, substitution: "/\\\\2/\\\\1"}
  - match: {prefix: "/host-rewrite"}
    route: {cluster: a, host_rewrite_literal: rewritten.example.com}
  - match: {prefix: "/redirect"}
    redirect: {host_redirect: other.example.com, path_redirect: "/elsewhere", response_code: PERMANENT_REDIRECT}
  - match: {prefix: "/https"}
    redirect: {https_redirect: true}
  - match: {prefix: "/direct"}
    direct_response: {status: 418, body: {inline_string: "I am a teapot"}}
  - match: {prefix: "/split"}
    route:
      weighted_clusters:
        clusters:
        - {name: a, weight: 20}
        - {name: b, weight: 80}
  - match: {prefix: "/hash"}
    route:
      cluster: ring
      hash_policy:
      - header: {header_name: x-user}
  - match: {prefix: "/headers"}
    request_headers_to_add:
    - header: {key: x-added, value: route}
    request_headers_to_remove: [x-remove-me]
    response_headers_to_add:
    - header: {key: x-resp-added, value: route}
    response_headers_to_remove: [x-backend]
    route: {cluster: a}
  - match: {prefix: "/fmt"}
    request_headers_to_add:
    - header: {key: x-client-ip, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}
    - header: {key: x-ua, value: "ua=%REQ(User-Agent)% 100%%"}
    - header: {key: x-start, value: "%START_TIME(%s.%3f)%"}
    - header: {key: x-proto, value: "%PROTOCOL%"}
    - header: {key: x-local-port, value: "%DOWNSTREAM_LOCAL_PORT%"}
    - header: {key: x-missing, value: "%REQ(x-not-sent)%"}
    - header: {key: x-missing-kept, value: "%REQ(x-not-sent)%"}
      keep_empty_value: true
    response_headers_to_add:
    - header: {key: x-upstream, value: "%UPSTREAM_REMOTE_ADDRESS%"}
    - header: {key: x-route, value: "%ROUTE_NAME%/%UPSTREAM_CLUSTER%"}
    name: fmt-route
    route: {cluster: a}
  - match: {prefix: "/down"}
    route: {cluster: down}
  - match: {prefix: "/dns"}
    route: {cluster: dns}
  - match: {prefix: "/empty"}
    route: {cluster: empty}
  - match: {prefix: "/timeout"}
    route: {cluster: a, timeout: 0.3s}
  - match: {prefix: "/"}
    route: {cluster: a}
"""
listeners = http_listener("main", port, route_config=routes)

clusters = (static_cluster("a", [a]) + static_cluster("b", [b]) + static_cluster("c", [c]) +
            static_cluster("ring", [a, b, c], lb="RING_HASH") + static_cluster("down", [free_port()]) +
            static_cluster("empty", []) + static_cluster("dns", [b]).replace("type: STATIC", "type: STRICT_DNS\n    dns_lookup_family: V4_ONLY")
            .replace("address: 127.0.0.1", "address: localhost"))
proxy = Proxy(bootstrap(admin, listeners, clusters), admin)
base = "http://127.0.0.1:%d" % port


def get(path, *args):
    st, h, body = curl(base + path, *args)
    try:
        j = json.loads(body)
    except ValueError:
        j = {}
    return st, h, body, j


st, h, body, j = get("/")
check("default route reaches a", st == 200 and j.get("name") == "a", (st, body))
check("x-envoy-upstream-service-time set", "x-envoy-upstream-service-time" in h, h)
check("x-request-id generated (uuid4)", len(j.get("headers", {}).get("x-request-id", "")) == 36
      and j["headers"]["x-request-id"][14] == "4", j.get("headers"))
check("x-forwarded-proto set", j.get("headers", {}).get("x-forwarded-proto") == "http")
check("route config and vhost request headers added",
      j.get("headers", {}).get("x-from-config") == "rc" and j.get("headers", {}).get("x-from-vhost") == "vh")
check("route config response header added", h.get("x-config-resp") == "rc", h)
check("server header is envoy", h.get("server") == "envoy", h)

st, h, body, j = get("/", "-H", "x-request-id: keep-me")
check("x-request-id kept", j.get("headers", {}).get("x-request-id") == "keep-me")

check("exact domain", get("/", "-H", "Host: exact.example.com")[3].get("name") == "b")
check("exact domain with port", get("/", "-H", "Host: exact.example.com:8080")[3].get("name") == "b")
check("suffix wildcard domain", get("/", "-H", "Host: foo.wild.com")[3].get("name") == "c")
check("prefix wildcard domain", get("/", "-H", "Host: api.anything")[2] == "prefix-wildcard")
check("path match", get("/exact")[3].get("name") == "b")
check("path match is exact", get("/exact/more")[3].get("name") == "a")
check("safe_regex match", get("/re/123")[3].get("name") == "c")
check("safe_regex full match only", get("/re/123x")[3].get("name") == "a")
check("case-insensitive prefix", get("/case/x")[3].get("name") == "c")
check("path_separated_prefix exact", get("/sep")[3].get("name") == "c")
check("path_separated_prefix segment", get("/sep/x")[3].get("name") == "c")
check("path_separated_prefix not partial", get("/sepx")[3].get("name") == "a")
check("header exact match", get("/hdr", "-H", "x-version: v2")[3].get("name") == "b")
check("header present match", get("/hdr", "-H", "x-present: 1")[3].get("name") == "c")
check("header no match falls through", get("/hdr")[3].get("name") == "a")
check("query parameter match", get("/query?user=jason")[3].get("name") == "b")
check("query parameter mismatch", get("/query?user=bob")[3].get("name") == "a")
check("prefix_rewrite", get("/rewrite/x?q=1")[3].get("path") == "/new/x?q=1", get("/rewrite/x?q=1")[3])
check("regex_rewrite", get("/regex-rewrite/one/two")[3].get("path") == "/two/one",
      get("/regex-rewrite/one/two")[3].get("path"))
check("host_rewrite_literal", get("/host-rewrite")[3].get("headers", {}).get("host") == "rewritten.example.com")

st, h, body, j = get("/redirect")
check("redirect 308 with host and path", st == 308 and h.get("location") == "http://other.example.com/elsewhere",
      (st, h.get("location")))
st, h, body, j = get("/https/x")
check("https_redirect", st == 301 and h.get("location", "").startswith("https://127.0.0.1"), (st, h.get("location")))
st, h, body, j = get("/direct")
check("direct_response", st == 418 and body == "I am a teapot", (st, body))

st, h, body, j = get("/headers", "-H", "x-remove-me: 1")
check("route request header added", j.get("headers", {}).get("x-added") == "route")
check("route request header removed", "x-remove-me" not in j.get("headers", {}))
check("route response header added", h.get("x-resp-added") == "route", h)
check("route response header removed", "x-backend" not in h, h)

st, h, body, j = get("/fmt", "-A", "tester/1")
fh = j.get("headers", {})
check("header value %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", fh.get("x-client-ip") == "127.0.0.1", fh)
check("header value %REQ(User-Agent)% with literal %%", fh.get("x-ua") == "ua=tester/1 100%", fh)
try:
    start = float(fh.get("x-start", "0"))
except ValueError:
    start = 0
check("header value %START_TIME(%s.%3f)% is now in seconds.millis",
      abs(start - time.time()) < 30 and len(fh.get("x-start", "").split(".")[-1]) == 3, fh.get("x-start"))
check("header value %PROTOCOL%", fh.get("x-proto") == "HTTP/1.1", fh)
check("header value %DOWNSTREAM_LOCAL_PORT%", fh.get("x-local-port") == str(port), fh)
check("a header whose value renders empty is not sent", "x-missing" not in fh, fh)
check("keep_empty_value sends it empty", fh.get("x-missing-kept") == "", fh)
check("response header %UPSTREAM_REMOTE_ADDRESS%", h.get("x-upstream") == "127.0.0.1:%d" % a, h)
check("response header %ROUTE_NAME%/%UPSTREAM_CLUSTER%", h.get("x-route") == "fmt-route/a", h)

counts = collections.Counter(get("/split")[3].get("name") for _ in range(300))
check("weighted split 20/80 within tolerance", 30 <= counts["a"] <= 95 and counts["a"] + counts["b"] == 300, counts)

users = {}
stable = True
for i in range(30):
    u = "user%d" % i
    first = get("/hash", "-H", "x-user: " + u)[3].get("name")
    again = get("/hash", "-H", "x-user: " + u)[3].get("name")
    stable &= first == again
    users[u] = first
check("ring hash sticky per header value", stable)
check("ring hash spreads users", len(set(users.values())) >= 2, users)

check("STRICT_DNS cluster resolves localhost", get("/dns")[3].get("name") == "b")
st, h, body, j = get("/empty")
check("cluster without hosts gives 503 no healthy upstream", st == 503 and body == "no healthy upstream", (st, body))
st, h, body, j = get("/down")
check("refused upstream gives 503", st == 503 and "upstream connect error" in body, (st, body))
st, h, body, j = get("/timeout", "-H", "x-delay-ms: 1500")
check("route timeout gives 504", st == 504 and body == "upstream request timeout", (st, body))

stats = proxy.stats()
check("downstream_rq_total counted", stats.get("http.ingress.downstream_rq_total", 0) >= 40, stats.get("http.ingress.downstream_rq_total"))
check("cluster upstream_rq_200 counted", stats.get("cluster.a.upstream_rq_200", 0) > 0)
check("upstream_cx_connect_fail counted", stats.get("cluster.down.upstream_cx_connect_fail", 0) >= 1)
check("upstream_rq_timeout counted", stats.get("cluster.a.upstream_rq_timeout", 0) >= 1)
check("listener downstream_cx_total counted", stats.get("listener.127.0.0.1_%d.downstream_cx_total" % port, 0) > 0,
      [k for k in stats if k.startswith("listener")])

check("proxy exits 0 on SIGTERM", proxy.stop() == 0, proxy.output()[-2000:])
finish()
