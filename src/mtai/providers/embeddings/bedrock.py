"""Amazon Titan Text Embeddings V2 on AWS Bedrock (InvokeModel), through aiobotocore."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mtai.providers.aws_client import LazyAwsClient
from mtai.providers.embeddings.base import (
    EmbeddingError,
    aws_advice,
    failure,
    normalise,
    with_retries,
)
from mtai.providers.llm.base import UpstreamError
from mtai.providers.llm.bedrock import _aws_errors
from mtai.services import tokenizer

Array = npt.NDArray[np.float32]

# What each Bedrock error code asks the operator to check; the AWS message is quoted as well.
_ADVICE = {
    "AccessDeniedException": "allow bedrock:InvokeModel on {model} to the AWS role and enable "
    "access to the model in the Bedrock console of {region}",
    "UnrecognizedClientException": "check the AWS credentials (task role, AWS_PROFILE or "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
    "ExpiredTokenException": "the AWS session token has expired: refresh the credentials",
    "ThrottlingException": "Bedrock is throttling: retry later or raise the account's "
    "InvokeModel quota for {model}",
    "ValidationException": "check that MTAI_EMBEDDING_BEDROCK_MODEL is an Amazon Titan Text "
    "Embeddings V2 model and MTAI_EMBEDDING_BEDROCK_DIMENSION is 256, 512 or 1024",
    "ResourceNotFoundException": "check MTAI_EMBEDDING_BEDROCK_MODEL and "
    "MTAI_EMBEDDING_BEDROCK_REGION ({region})",
}


class BedrockEmbedder:
    """Titan Text Embeddings V2: one text per call, so calls run concurrently, 8 at a time.

    Credentials come from the AWS chain (the ECS task role in production, env vars or a
    profile elsewhere). Bedrock returns unit vectors itself ("normalize": true).
    """

    max_tokens = 8192  # Titan V2's input limit
    query_prefix = passage_prefix = ""  # Titan takes none
    # Texts a caller should hand over per `aembed`: enough to keep the 8 calls busy.
    batch_size = 32

    def __init__(
        self,
        model_id: str,
        dimension: int,
        *,
        region: str,
        endpoint_url: str | None = None,
        timeout: float = 30.0,
        retries: int = 2,
        concurrency: int = 8,
    ) -> None:
        self.name = f"bedrock/{model_id}"
        self.model_id = model_id
        self.dimension = dimension
        self.region = region
        self._retries = retries
        self._aws = LazyAwsClient(
            "bedrock-runtime",
            region=region,
            endpoint_url=endpoint_url,
            timeout=timeout,
            max_pool_connections=max(10, concurrency),
        )
        self._slots = asyncio.Semaphore(concurrency)

    def count_tokens(self, text: str) -> int:
        """An estimate: Titan's own tokenizer is not public, so cl100k stands in for it.

        Close enough for sizing chunks far below `max_tokens`; Bedrock reports the exact count
        (inputTextTokenCount) only after the call.
        """
        return tokenizer.count(text)

    async def aembed(self, texts: Sequence[str]) -> Array:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        client = await self._aws.get()
        try:
            # A TaskGroup cancels the remaining calls as soon as one fails for good.
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._embed_one(client, text)) for text in texts]
        except* EmbeddingError as failures:
            # Callers expect one EmbeddingError, not a group; the first says what went wrong.
            raise failures.exceptions[0] from failures.exceptions[0].__cause__
        # Re-normalised anyway: Bedrock rounds, and the protocol promises unit rows.
        return normalise(np.stack([task.result() for task in tasks]))

    async def _embed_one(self, client: Any, text: str) -> Array:
        async with self._slots:
            raw = await with_retries(
                functools.partial(self._invoke, client, text),
                retries=self._retries,
                describe=self._describe,
            )
        try:
            vector = json.loads(raw)["embedding"]
            if not isinstance(vector, list):
                raise TypeError("embedding is not a list of floats")
            array = np.asarray(vector, dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(
                f"{self.name} sent a malformed response ({exc!r}); check that "
                "MTAI_EMBEDDING_BEDROCK_MODEL is an Amazon Titan Text Embeddings V2 model."
            ) from exc
        if array.shape != (self.dimension,):
            raise EmbeddingError(
                f"{self.name} returned {array.size}-dimensional vectors, not {self.dimension}: "
                "check MTAI_EMBEDDING_BEDROCK_DIMENSION (256, 512 or 1024)."
            )
        return array

    async def _invoke(self, client: Any, text: str) -> bytes:
        body = {"inputText": text, "dimensions": self.dimension, "normalize": True}
        with _aws_errors():
            response = await client.invoke_model(
                modelId=self.model_id,
                body=json.dumps(body),
                contentType="application/json",
                accept="application/json",
            )
            async with response["body"] as stream:
                raw: bytes = await stream.read()
        return raw

    def _describe(self, exc: UpstreamError, attempts: int) -> EmbeddingError:
        advice = aws_advice(
            exc,
            _ADVICE,
            settings="MTAI_EMBEDDING_BEDROCK_",
            model=self.model_id,
            region=self.region,
        )
        return EmbeddingError(failure(f"Embedding with {self.name}", exc, attempts, advice, None))

    async def aclose(self) -> None:
        await self._aws.aclose()
