"""The Cohere-compatible rerank API, as LiteLLM offers it: `POST /v1/rerank`, and `/v2/rerank`
where Cohere's own SDK (`cohere.ClientV2(base_url=...)`) sends it. The platform's reranker
(MTAI_RERANK_*) orders the documents; each call is metered like an embedding."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from mtai.api.deps import PrincipalDep, RuntimeDep
from mtai.context import request_id_var
from mtai.services.reranking import MAX_DOCUMENTS

router = APIRouter(tags=["rerank"])


class RerankDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


class RerankRequest(BaseModel):
    # Unknown fields (rank_fields, max_tokens_per_doc, ...) are refused, not dropped in silence.
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=200)
    query: str = Field(min_length=1)
    documents: list[str | RerankDocument] = Field(min_length=1, max_length=MAX_DOCUMENTS)
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False


async def _rerank(body: RerankRequest, principal: PrincipalDep, runtime: RuntimeDep) -> Any:
    texts = [d if isinstance(d, str) else d.text for d in body.documents]
    result = await runtime.reranking.rerank(principal, body.model, body.query, texts, body.top_n)
    return {
        "id": request_id_var.get(),
        "results": [
            {
                "index": r.index,
                "relevance_score": r.score,
                **({"document": {"text": texts[r.index]}} if body.return_documents else {}),
            }
            for r in result.results
        ],
        "meta": {
            "api_version": {"version": "2"},
            "billed_units": {"search_units": 1},
            "tokens": {"input_tokens": result.tokens, "output_tokens": 0},
        },
    }


router.add_api_route("/v1/rerank", _rerank, methods=["POST"], summary="Rerank documents")
router.add_api_route("/v2/rerank", _rerank, methods=["POST"], summary="Rerank (Cohere SDK path)")
