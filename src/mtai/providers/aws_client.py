"""An aiobotocore client opened on first use and closed with its owner, as the Bedrock
embedder and reranker use theirs."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config


class LazyAwsClient:
    """Credentials come from the AWS chain (the ECS task role in production, env vars or a
    profile elsewhere). Botocore retries nothing: the callers apply their own policy."""

    def __init__(
        self,
        service: str,
        *,
        region: str,
        endpoint_url: str | None,
        timeout: float,
        max_pool_connections: int = 10,
    ) -> None:
        self._service = service
        self._kwargs: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint_url,
            "config": Config(
                retries={"total_max_attempts": 1},
                read_timeout=timeout,
                connect_timeout=min(timeout, 10.0),
                max_pool_connections=max_pool_connections,
            ),
        }
        self._opening = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def get(self) -> Any:
        # The lock keeps concurrent first calls from opening two clients (one would leak).
        async with self._opening:
            if self._client is None:
                self._client = await self._stack.enter_async_context(
                    get_session().create_client(self._service, **self._kwargs)
                )
        return self._client

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._client = None
