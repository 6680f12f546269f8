"""Bedrock's reranker models (Amazon Rerank 1.0, Cohere Rerank 3.5) through the Agent Runtime
`Rerank` API, with aiobotocore."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

from mtai.providers.aws_client import LazyAwsClient
from mtai.providers.embeddings.base import aws_advice, failure, with_retries
from mtai.providers.llm.base import UpstreamError
from mtai.providers.llm.bedrock import _aws_errors
from mtai.providers.rerank.base import Relevance, RerankError, ordered
from mtai.services import tokenizer

_ADVICE = {
    "AccessDeniedException": "allow bedrock:Rerank and bedrock:InvokeModel on {model} to the AWS "
    "role and enable access to the model in the Bedrock console of {region}",
    "UnrecognizedClientException": "check the AWS credentials (task role, AWS_PROFILE or "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
    "ThrottlingException": "Bedrock is throttling: retry later or raise the account's quota",
    "ValidationException": "check that MTAI_RERANK_MODEL is a Bedrock reranker model "
    "(amazon.rerank-v1:0, cohere.rerank-v3-5:0) offered in {region}",
    "ResourceNotFoundException": "check MTAI_RERANK_MODEL and MTAI_RERANK_BEDROCK_REGION "
    "({region})",
}


class BedrockReranker:
    """Credentials come from the AWS chain, as for the Bedrock chat and embedding models."""

    max_documents = 1000  # the Rerank API's limit on sources per call

    def __init__(
        self,
        model_id: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        timeout: float = 30.0,
        retries: int = 2,
    ) -> None:
        self.name = f"bedrock/{model_id}"
        self.model_id = model_id
        self.region = region
        self._arn = f"arn:aws:bedrock:{region}::foundation-model/{model_id}"
        self._retries = retries
        self._aws = LazyAwsClient(
            "bedrock-agent-runtime",
            region=region,
            endpoint_url=endpoint_url,
            timeout=timeout,
        )

    def count_tokens(self, text: str) -> int:
        """An estimate (cl100k): Bedrock bills reranking per query of up to 100 documents."""
        return tokenizer.count(text)

    async def arerank(self, query: str, documents: Sequence[str]) -> list[Relevance]:
        documents = list(documents)
        if not documents:
            return []
        client = await self._aws.get()
        return await with_retries(
            functools.partial(self._call, client, query, documents),
            retries=self._retries,
            describe=self._describe,
        )

    async def _call(self, client: Any, query: str, documents: list[str]) -> list[Relevance]:
        with _aws_errors():
            response = await client.rerank(
                queries=[{"type": "TEXT", "textQuery": {"text": query}}],
                sources=[
                    {
                        "type": "INLINE",
                        "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": text}},
                    }
                    for text in documents
                ],
                rerankingConfiguration={
                    "type": "BEDROCK_RERANKING_MODEL",
                    "bedrockRerankingConfiguration": {
                        "numberOfResults": len(documents),
                        "modelConfiguration": {"modelArn": self._arn},
                    },
                },
            )
        try:
            found = []
            for item in response["results"]:
                index, score = item["index"], float(item["relevanceScore"])
                if not isinstance(index, int) or not math.isfinite(score):
                    raise ValueError(f"bad result {item!r}"[:200])
                found.append(Relevance(index, score))
            return ordered(found, len(documents), self.name)
        except (ValueError, KeyError, TypeError) as exc:
            raise RerankError(f"{self.name} sent a malformed response ({exc!r})"[:400]) from exc

    def _describe(self, exc: UpstreamError, attempts: int) -> RerankError:
        advice = aws_advice(
            exc, _ADVICE, settings="MTAI_RERANK_BEDROCK_", model=self.model_id, region=self.region
        )
        return RerankError(failure(f"Reranking with {self.name}", exc, attempts, advice, None))

    async def aclose(self) -> None:
        await self._aws.aclose()
