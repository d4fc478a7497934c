"""JSON over HTTP to the API server, for the operator's hot paths (writes, lists, watches).

The generated client costs per call what the operator cannot afford per job: parameter
checks, model (de)serialization, and an aiohttp session that trusts the environment, which
reads ~/.netrc and the proxy variables on a worker thread for every single request. This layer
keeps the generated client's configuration (server, TLS, credentials with their refresh hook)
and sends plain JSON on a session of its own: proxy variables read once, no netrc, answers
decoded with orjson. Errors are the generated client's ApiException, so callers handle both
alike.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.client.rest import RESTClientObject
from multidict import CIMultiDictProxy
from yarl import URL

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
# Connections to the API server: the loop's parallel writes, Events, watches and lists.
CONNECTIONS = 64
# Watch events carry whole objects; the API server stores up to 1.5 MiB (etcd's limit).
READ_BUFFER = 2**21


def loads(data: bytes | str) -> Any:
    """Decode JSON with orjson; objects nested deeper than its 1,024 levels (the API server
    stores up to 10,000) take the standard decoder, which the operator's deep stack allows."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def env_proxy(host: str) -> str | None:
    """The proxy the environment names for `host` (HTTPS_PROXY, NO_PROXY...), read once."""
    try:
        proxy, auth = aiohttp.helpers.get_env_proxy_for_url(URL(host))
    except LookupError:
        return None
    if auth is not None:
        proxy = proxy.with_user(auth.login).with_password(auth.password)
    return str(proxy)


def api_error(
    status: int, reason: str | None, body: bytes, headers: CIMultiDictProxy[str]
) -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = body
    error.headers = headers
    return error


class Http:
    def __init__(self, api: ApiClient) -> None:
        self.api = api
        rest = api.rest_client
        self.base = str(api.configuration.host).rstrip("/")
        self.extra: dict[str, Any] = {}
        proxy = rest.proxy or env_proxy(self.base)
        if proxy:
            self.extra["proxy"] = proxy
            if rest.proxy_headers:
                self.extra["proxy_headers"] = rest.proxy_headers
        if rest.server_hostname:
            self.extra["server_hostname"] = rest.server_hostname
        # A pool of its own, TLS and client certificates set up as the generated client's (a
        # RESTClientObject of the same configuration, whose session is let go): writes and
        # watches must never keep the Lease renewal (generated client) waiting for a connection.
        pool = RESTClientObject(api.configuration, maxsize=CONNECTIONS)
        connector = pool.pool_manager.connector
        pool.pool_manager.detach()
        self.session = aiohttp.ClientSession(
            connector=connector, trust_env=False, read_bufsize=READ_BUFFER
        )

    async def close(self) -> None:
        await self.session.close()

    async def _headers(self, content_type: str) -> dict[str, str]:
        headers = {**self.api.default_headers, "Accept": JSON, "Content-Type": content_type}
        await self.api.update_params_for_auth(headers, [], ["BearerToken"])
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        seconds: float,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> Any:
        """Send one request; the decoded answer, or ApiException for any status but 2xx."""
        async with self.session.request(
            method,
            self.base + path,
            params=query,
            data=None if body is None else orjson.dumps(body),
            headers=await self._headers(content_type),
            timeout=aiohttp.ClientTimeout(total=seconds),
            **self.extra,
        ) as response:
            data = await response.read()
            if not 200 <= response.status <= 299:
                raise api_error(response.status, response.reason, data, response.headers)
            return loads(data)

    async def watch(
        self, path: str, query: Mapping[str, str], *, seconds: float, connect_seconds: float
    ) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch request, decoded, until the server ends it."""
        async with self.session.get(
            self.base + path,
            params={**query, "watch": "true"},
            headers=await self._headers(JSON),
            timeout=aiohttp.ClientTimeout(total=seconds, sock_connect=connect_seconds),
            **self.extra,
        ) as response:
            if not 200 <= response.status <= 299:
                raise api_error(
                    response.status, response.reason, await response.read(), response.headers
                )
            async for line in response.content:
                if line.strip():
                    yield loads(line)
