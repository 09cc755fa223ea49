"""Ask the cloud's instance metadata service which region this machine is in. Opt-in only.

:func:`greenml.factors.location.detect` looks only at cheap local evidence (environment
variables). This module is the one place greenml talks to a metadata service, and nothing in
greenml calls it unless the user asks: the setting ``location_from_metadata=True`` turns it on
and ``metadata_endpoint`` overrides the address (both wired up in the settings, not here).

Why opt-in: off a cloud VM, ``169.254.169.254`` is usually unroutable, so a request waits for
its timeout; on a laptop, behind a proxy or in a locked-down cluster, a surprise connection to
a link-local address is at best a stall and at worst a security alert. A tracking library that
makes silent network calls at import or run time is exactly what greenml avoids.

Contract of :func:`query_region` / :func:`query_any`:

- standard library only (:mod:`urllib.request`); environment proxies are ignored (the services
  are link-local) and redirects are not followed (a redirect is not an answer);
- the whole call, including the AWS token round trip, shares one deadline of ``timeout_s``
  (``query_any``: at most ``len(providers) * timeout_s``). The deadline bounds connecting and
  each read; it cannot bound a slow DNS lookup of a host-name endpoint, which is one reason to
  pass an IP address as ``endpoint``;
- the service not answering in time, refusing the connection or answering anything but
  200 gives ``None`` and one INFO log line with the reason; network trouble never raises;
- an unknown provider, a bad endpoint or a non-positive timeout raise
  :class:`~greenml.errors.ConfigError`, before any request is sent;
- an answer that is not a region in greenml's table raises the
  :class:`~greenml.errors.ConfigError` of :func:`~greenml.factors.location.parse`, which names
  the region and suggests close ones: the service did answer, and guessing would be wrong.

The three services:

- ``aws``: IMDSv2. ``PUT /latest/api/token`` (header ``X-aws-ec2-metadata-token-ttl-seconds``)
  returns a session token; ``GET /latest/meta-data/placement/region`` with header
  ``X-aws-ec2-metadata-token`` returns e.g. ``eu-north-1``.
- ``gcp``: ``GET /computeMetadata/v1/instance/zone`` with ``Metadata-Flavor: Google`` returns
  ``projects/<number>/zones/<zone>``; the region is the zone less its ``-<letter>`` suffix.
- ``azure``: ``GET /metadata/instance/compute/location?api-version=2021-02-01&format=text``
  with ``Metadata: true`` returns e.g. ``westeurope``.
"""

from __future__ import annotations

import http.client
import logging
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping

from greenml._version import __version__
from greenml.errors import ConfigError
from greenml.factors import location
from greenml.factors.location import Location

log = logging.getLogger(__name__)

PROVIDERS = ("aws", "gcp", "azure")
DEFAULT_ENDPOINTS: Mapping[str, str] = {
    "aws": "http://169.254.169.254",
    "gcp": "http://169.254.169.254",  # the IP, not metadata.google.internal: no DNS lookup
    "azure": "http://169.254.169.254",
}
DEFAULT_TIMEOUT_S = 0.5
#: Lifetime asked for the IMDSv2 session token; we use it once, straight away.
AWS_TOKEN_TTL_S = 60
#: The longest answer read; a region or a GCP zone path is a few dozen bytes.
_MAX_ANSWER_BYTES = 1024
_USER_AGENT = f"greenml/{__version__}"


class _Unanswered(Exception):
    """Internal: the service gave no usable answer; the message says why."""


def query_region(
    provider: str,
    *,
    endpoint: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Location | None:
    """The region the metadata service of ``provider`` reports, or None if it does not answer.

    ``endpoint`` (scheme and host, e.g. ``http://169.254.169.254``) replaces the provider's
    default; ``timeout_s`` bounds the whole call. See the module docstring for the contract.
    """
    provider = _check_provider(provider)
    _check_timeout(timeout_s)
    base = _check_endpoint(endpoint if endpoint is not None else DEFAULT_ENDPOINTS[provider])
    deadline = time.monotonic() + timeout_s
    try:
        region = _QUERIES[provider](_Client(deadline), base)
    except _Unanswered as e:
        log.info("no region from the %s metadata service at %s: %s", provider, base, e)
        return None
    return location.parse(f"{provider}:{region}", origin=f"{provider} metadata service")


def query_any(
    providers: Iterable[str] = PROVIDERS,
    *,
    endpoints: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Location | None:
    """The first region a metadata service reports, trying ``providers`` in order, or None.

    ``endpoints`` maps a provider to its endpoint override. Each provider gets ``timeout_s``,
    so the call takes at most ``len(providers) * timeout_s``. All arguments are checked before
    the first request.
    """
    names = tuple(_check_provider(p) for p in providers)
    _check_timeout(timeout_s)
    overrides = {_check_provider(k): _check_endpoint(v) for k, v in (endpoints or {}).items()}
    for name in names:
        found = query_region(name, endpoint=overrides.get(name), timeout_s=timeout_s)
        if found is not None:
            return found
    return None


# -- the three services ---------------------------------------------------------------------


def _aws(client: _Client, base: str) -> str:
    token = client.fetch(
        "PUT",
        f"{base}/latest/api/token",
        {"X-aws-ec2-metadata-token-ttl-seconds": str(AWS_TOKEN_TTL_S)},
    )
    if not token:
        raise _Unanswered("empty IMDSv2 token")
    return client.fetch(
        "GET",
        f"{base}/latest/meta-data/placement/region",
        {"X-aws-ec2-metadata-token": token},
    )


def _gcp(client: _Client, base: str) -> str:
    zone_path = client.fetch(
        "GET", f"{base}/computeMetadata/v1/instance/zone", {"Metadata-Flavor": "Google"}
    )
    zone = zone_path.rpartition("/")[2]  # projects/123456/zones/us-central1-a -> us-central1-a
    region, dash, _suffix = zone.rpartition("-")
    return region if dash else zone  # no suffix: let parse() judge the answer as it is


def _azure(client: _Client, base: str) -> str:
    return client.fetch(
        "GET",
        f"{base}/metadata/instance/compute/location?api-version=2021-02-01&format=text",
        {"Metadata": "true"},
    )


_QUERIES: Mapping[str, Callable[[_Client, str], str]] = {
    "aws": _aws,
    "gcp": _gcp,
    "azure": _azure,
}


# -- HTTP -------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Turn a 3xx into an HTTPError instead of following it."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _Client:
    """Plain HTTP requests sharing one deadline, with no proxy and no redirects."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)

    def fetch(self, method: str, url: str, headers: Mapping[str, str]) -> str:
        """The body of a 200 answer, stripped; anything else raises :class:`_Unanswered`."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise _Unanswered(f"timed out before {method} {_path(url)}")
        request = urllib.request.Request(
            url, method=method, headers={"User-Agent": _USER_AGENT, **headers}
        )
        try:
            with self._opener.open(request, timeout=remaining) as response:
                if response.status != 200:
                    raise _Unanswered(f"{method} {_path(url)} answered HTTP {response.status}")
                body = response.read(_MAX_ANSWER_BYTES)
        except urllib.error.HTTPError as e:
            e.close()
            raise _Unanswered(f"{method} {_path(url)} answered HTTP {e.code}") from None
        except urllib.error.URLError as e:
            raise _Unanswered(f"{method} {_path(url)} failed: {e.reason}") from None
        except (OSError, http.client.HTTPException) as e:  # timeouts, resets while reading
            raise _Unanswered(f"{method} {_path(url)} failed: {e!r}") from None
        return body.decode("utf-8", errors="replace").strip()


def _path(url: str) -> str:
    return urllib.parse.urlsplit(url).path


# -- argument checks --------------------------------------------------------------------------


def _check_provider(provider: str) -> str:
    name = provider.strip().lower() if isinstance(provider, str) else provider
    if name not in PROVIDERS:
        raise ConfigError(
            f"metadata provider {provider!r} is unknown; use one of {', '.join(PROVIDERS)}"
        )
    return name


def _check_timeout(timeout_s: float) -> None:
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, (int, float))
        or not math.isfinite(timeout_s)
        or timeout_s <= 0
    ):
        raise ConfigError(
            f"timeout_s={timeout_s!r} is invalid: give a positive number of seconds, "
            f"e.g. {DEFAULT_TIMEOUT_S}"
        )


def _check_endpoint(endpoint: str) -> str:
    parts = urllib.parse.urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"metadata_endpoint={endpoint!r} is invalid: give a scheme and host, "
            "e.g. 'http://169.254.169.254'"
        )
    return endpoint.rstrip("/")
