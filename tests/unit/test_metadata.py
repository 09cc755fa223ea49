"""The opt-in metadata-service query, against a real HTTP server on 127.0.0.1.

The fake server mimics the three services as documented: AWS IMDSv2 (a PUT hands out a token
that the GET must carry, else 401), GCP (``Metadata-Flavor: Google``, else 400) and Azure
(``Metadata: true``, else 400). Expected zones come from the providers' own region lists
(Stockholm lies in bidding zone SE-3; europe-west9 is Paris; West Europe is the Netherlands).
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from greenml.errors import ConfigError
from greenml.factors import metadata

LOOPBACK = "127.0.0.1"
AZURE_PATH = "/metadata/instance/compute/location?api-version=2021-02-01&format=text"


class FakeMetadataServer(ThreadingHTTPServer):
    """All three providers' metadata services on one loopback port."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self.answers = {
            "aws": "eu-north-1",
            "gcp": "projects/123456/zones/europe-west9-b",
            "azure": "westeurope",
        }
        # Header each GET must carry, as (name, value); AWS's is the token, checked apart.
        self.required = {"gcp": ("Metadata-Flavor", "Google"), "azure": ("Metadata", "true")}
        self.delay_s = 0.0
        self.rotate_tokens = False  # True: a new token per PUT is issued and the old one dropped
        self.tokens: set[str] = set()
        # (method, path, headers); the headers are an email.message.Message, so case-blind.
        self.requests: list[tuple[str, str, Message]] = []
        self.release = threading.Event()  # set at teardown to wake sleeping handlers

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeMetadataServer

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def _begin(self) -> bool:
        self.server.requests.append((self.command, self.path, self.headers))
        # A delayed answer is dropped if the test ends first (release is set at teardown).
        return not (self.server.delay_s and self.server.release.wait(self.server.delay_s))

    def _send(self, status: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        if not self._begin():
            return
        if self.path != "/latest/api/token":
            self._send(404)
        elif not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._send(400, "missing X-aws-ec2-metadata-token-ttl-seconds")
        else:
            token = secrets.token_urlsafe(16)
            if self.server.rotate_tokens:
                self.server.tokens.clear()
                self.server.tokens.add(secrets.token_urlsafe(16))  # not the one handed out
            else:
                self.server.tokens.add(token)
            self._send(200, token)

    def do_GET(self):
        if not self._begin():
            return
        if self.path == "/latest/meta-data/placement/region":
            if self.headers.get("X-aws-ec2-metadata-token") not in self.server.tokens:
                self._send(401, "Unauthorized")
            else:
                self._send(200, self.server.answers["aws"])
            return
        provider = {"/computeMetadata/v1/instance/zone": "gcp", AZURE_PATH: "azure"}.get(self.path)
        if provider is None:
            self._send(404)
            return
        name, value = self.server.required[provider]
        if self.headers.get(name) != value:
            self._send(400, f"missing {name}: {value}")
        else:
            self._send(200, self.server.answers[provider] + "\n")


@pytest.fixture
def server() -> Iterator[FakeMetadataServer]:
    srv = FakeMetadataServer()
    thread = threading.Thread(
        target=srv.serve_forever, args=(0.05,), name="fake-metadata", daemon=True
    )
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=2)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connecting is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("provider", "region", "zone"),
    [("aws", "eu-north-1", "SE-3"), ("gcp", "europe-west9", "FR"), ("azure", "westeurope", "NL")],
)
def test_each_provider_resolves_to_its_location(server, provider, region, zone):
    loc = metadata.query_region(provider, endpoint=server.url, timeout_s=1.0)
    assert loc is not None
    assert (loc.provider, loc.region, loc.zone) == (provider, region, zone)
    assert loc.origin == f"{provider} metadata service"
    assert not loc.assumed


def test_aws_get_carries_the_token_the_put_returned(server):
    metadata.query_region("aws", endpoint=server.url, timeout_s=1.0)
    (put, get) = server.requests
    assert put[:2] == ("PUT", "/latest/api/token")
    assert put[2]["X-aws-ec2-metadata-token-ttl-seconds"] == "60"
    assert get[:2] == ("GET", "/latest/meta-data/placement/region")
    assert get[2]["X-aws-ec2-metadata-token"] in server.tokens


def test_the_fake_rejects_requests_without_the_headers(server):
    # The success tests above mean something only if the fake really checks the headers.
    for path, status in [
        ("/latest/meta-data/placement/region", 401),
        ("/computeMetadata/v1/instance/zone", 400),
        (AZURE_PATH, 400),
    ]:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url + path, timeout=1.0)
        err.value.close()
        assert err.value.code == status, path


def test_stale_aws_token_gives_none(server, caplog):
    server.rotate_tokens = True  # the GET's token is no longer valid: 401
    with caplog.at_level(logging.INFO, logger="greenml.factors.metadata"):
        assert metadata.query_region("aws", endpoint=server.url, timeout_s=1.0) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"no region from the aws metadata service at {server.url}: "
        "GET /latest/meta-data/placement/region answered HTTP 401"
    ]


@pytest.mark.parametrize("provider", ["gcp", "azure"])
def test_missing_header_gives_none(server, provider):
    # The server demands a header the client does not send, as if ours had gone missing.
    server.required[provider] = ("X-Not-Sent", "yes")
    assert metadata.query_region(provider, endpoint=server.url, timeout_s=1.0) is None
    assert len(server.requests) == 1


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_slow_service_gives_none_within_the_timeout(server, provider, caplog):
    server.delay_s = 5.0
    timeout_s = 0.2
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="greenml.factors.metadata"):
        assert metadata.query_region(provider, endpoint=server.url, timeout_s=timeout_s) is None
    assert time.monotonic() - start < timeout_s * 4
    assert len(caplog.records) == 1
    assert "timed out" in caplog.records[0].getMessage()


def test_aws_token_and_region_share_one_deadline(server):
    # Each request alone fits in the timeout, both together do not: the GET is never sent
    # (or is cut short), and the whole call still ends near the timeout.
    server.delay_s = 0.15
    timeout_s = 0.2
    start = time.monotonic()
    assert metadata.query_region("aws", endpoint=server.url, timeout_s=timeout_s) is None
    assert time.monotonic() - start < timeout_s * 4


def test_connection_refused_gives_none(closed_port, caplog):
    with caplog.at_level(logging.INFO, logger="greenml.factors.metadata"):
        found = metadata.query_region(
            "azure", endpoint=f"http://{LOOPBACK}:{closed_port}", timeout_s=0.5
        )
    assert found is None
    assert len(caplog.records) == 1
    assert "refused" in caplog.records[0].getMessage().lower()


def test_environment_proxy_is_not_used(server, closed_port, monkeypatch):
    # A proxy that refuses everything: the query succeeds only if it goes straight through.
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, f"http://{LOOPBACK}:{closed_port}")
    loc = metadata.query_region("gcp", endpoint=server.url, timeout_s=1.0)
    assert loc is not None
    assert loc.region == "europe-west9"


def test_answer_that_is_not_a_known_region_raises(server):
    server.answers["azure"] = "westeurop"
    with pytest.raises(ConfigError, match=r"westeurop.*westeurope"):
        metadata.query_region("azure", endpoint=server.url, timeout_s=1.0)


def test_unknown_provider_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"'ibm'.*aws, gcp, azure"):
        metadata.query_region("ibm")


@pytest.mark.parametrize("timeout_s", [0, -1.0, float("nan"), float("inf")])
def test_bad_timeout_raises_before_any_request(server, timeout_s):
    with pytest.raises(ConfigError, match="timeout_s="):
        metadata.query_region("aws", endpoint=server.url, timeout_s=timeout_s)
    with pytest.raises(ConfigError, match="timeout_s="):
        metadata.query_any(endpoints={"aws": server.url}, timeout_s=timeout_s)
    assert server.requests == []


@pytest.mark.parametrize("endpoint", ["169.254.169.254", "ftp://127.0.0.1", ""])
def test_bad_endpoint_raises(endpoint):
    with pytest.raises(ConfigError, match="metadata_endpoint="):
        metadata.query_region("aws", endpoint=endpoint)


def test_query_any_returns_the_first_that_answers(server, closed_port):
    endpoints = {
        "aws": f"http://{LOOPBACK}:{closed_port}",  # refused
        "gcp": server.url,
        "azure": server.url,
    }
    loc = metadata.query_any(endpoints=endpoints, timeout_s=1.0)
    assert loc is not None
    assert (loc.provider, loc.region, loc.zone) == ("gcp", "europe-west9", "FR")
    assert [path for _, path, _ in server.requests] == ["/computeMetadata/v1/instance/zone"]


def test_query_any_gives_none_when_nothing_answers_in_bounded_time(server):
    server.delay_s = 5.0
    timeout_s = 0.15
    providers = ("aws", "gcp", "azure")
    start = time.monotonic()
    found = metadata.query_any(
        providers, endpoints=dict.fromkeys(providers, server.url), timeout_s=timeout_s
    )
    assert found is None
    assert time.monotonic() - start < len(providers) * timeout_s * 2


def test_query_any_checks_every_argument_first(server):
    with pytest.raises(ConfigError, match="'ibm'"):
        metadata.query_any(("gcp", "ibm"), endpoints={"gcp": server.url})
    with pytest.raises(ConfigError, match="'oracle'"):
        metadata.query_any(endpoints={"gcp": server.url, "oracle": server.url})
    assert server.requests == []
