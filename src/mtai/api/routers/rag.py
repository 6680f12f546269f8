"""RAG: knowledge bases, documents (upload, list, get, delete), search and statistics."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import (
    AliasChoices,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from mtai.api.deps import PagingDep, PrincipalDep, RuntimeDep
from mtai.api.schemas import Page, ResponseModel, StrictModel
from mtai.db.models import Collection
from mtai.errors import AppError, InvalidInput
from mtai.services.documents import Upload
from mtai.services.knowledge_bases import DEFAULT_LANGUAGE
from mtai.services.rank_fusion import MAX_WEIGHT, Weights, valid_weights
from mtai.services.retrieval import Hit, SearchMode, SearchQuery

router = APIRouter(prefix="/api/v1/rag", tags=["rag"])
DOCUMENTS_PATH = "/api/v1/rag/documents"
# Multipart framing and the small form fields around the file.
FORM_OVERHEAD_BYTES = 64 * 1024
_META_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MetadataValue = str | int | float | bool
TextType = Literal["text/plain", "text/markdown", "text/html", "text/csv", "application/json"]


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


def _check_metadata(value: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
    if len(value) > 32:
        raise ValueError("at most 32 metadata keys")
    for key, item in value.items():
        if not _META_KEY.match(key):
            raise ValueError(f"metadata key {key!r} must be 1-64 letters, digits or _.:-")
        if isinstance(item, str) and len(item) > 1000:
            raise ValueError(f"metadata value of {key!r} is longer than 1000 characters")
    return value


class FusionWeights(StrictModel):
    vector: float = Field(ge=0, le=MAX_WEIGHT, allow_inf_nan=False)
    keyword: float = Field(ge=0, le=MAX_WEIGHT, allow_inf_nan=False)

    @model_validator(mode="after")
    def _not_both_zero(self) -> FusionWeights:
        if not valid_weights(self.vector, self.keyword):
            raise ValueError("at least one of the weights must be above 0")
        return self

    def to_weights(self) -> Weights:
        return Weights(self.vector, self.keyword)


_WEIGHTS = (
    "Hybrid search's weights for the vector and the keyword list in this knowledge base, "
    "relative to each other; null: the platform's."
)


_RERANK = (
    "Searches of this knowledge base reorder their best passages with the platform's reranker "
    "(MTAI_RERANK_PROVIDER); a search without one configured fails with 503."
)


_LANGUAGE = (
    "Keyword search's language, a PostgreSQL text search configuration (english, german, "
    "french, ...; simple for mixed content: no stemming, no stop words)."
)


class CollectionIn(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    embedding_model: str | None = Field(
        default=None, max_length=200, description="Default: the platform's embedding model."
    )
    weights: FusionWeights | None = Field(default=None, description=_WEIGHTS)
    rerank: bool = Field(default=False, description=_RERANK)
    language: str = Field(default=DEFAULT_LANGUAGE, max_length=40, description=_LANGUAGE)


class CollectionPatch(StrictModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    embedding_model: str | None = Field(
        default=None, max_length=200, description="Changing it re-embeds every document."
    )
    weights: FusionWeights | None = Field(
        default=None, description=_WEIGHTS + " Sent as null, back to the platform's."
    )
    rerank: bool | None = Field(default=None, description=_RERANK)
    language: str | None = Field(
        default=None, max_length=40, description=_LANGUAGE + " Changing it reparses every chunk."
    )


class CollectionOut(ResponseModel):
    id: uuid.UUID
    name: str
    description: str
    embedding_model: str
    embedding_dim: int
    weights: FusionWeights | None = None
    rerank: bool
    language: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, collection: Collection) -> CollectionOut:
        vector, keyword = collection.vector_weight, collection.keyword_weight
        weights = (
            None
            if vector is None or keyword is None
            else FusionWeights(vector=vector, keyword=keyword)
        )
        return cls.model_validate(collection).model_copy(update={"weights": weights})


class CollectionChanged(CollectionOut):
    reembedding: int = Field(description="Documents queued again for the new embedding model.")


class TextDocumentIn(StrictModel):
    # The text is the document: stored byte for byte, whitespace included.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    text: str = Field(min_length=1, description="The document's content.")
    title: str | None = Field(default=None, max_length=500)
    description: str = Field(default="", max_length=2000)
    collection: str | None = Field(
        default=None, max_length=200, description="Knowledge base id or name; default 'default'."
    )
    content_type: TextType = "text/plain"
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)

    _metadata = field_validator("metadata")(_check_metadata)


class FormFields(StrictModel):
    title: str | None = Field(default=None, max_length=500)
    description: str = Field(default="", max_length=2000)
    collection: str | None = Field(default=None, max_length=200)
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)

    _metadata = field_validator("metadata")(_check_metadata)


class DocumentOut(ResponseModel):
    id: uuid.UUID
    collection_id: uuid.UUID
    title: str
    description: str
    filename: str | None
    content_type: str | None
    kind: str | None
    size_bytes: int
    sha256: str
    status: str
    progress: float
    error: str | None
    attempts: int
    chunk_count: int
    token_count: int
    embedding_model: str | None
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("doc_metadata", "metadata"))
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None


class UploadOut(DocumentOut):
    duplicate: bool = Field(description="The same content was already in that knowledge base.")


class SearchFilters(StrictModel):
    document_ids: list[uuid.UUID] | None = Field(default=None, max_length=1000)
    metadata: dict[str, MetadataValue] = Field(
        default_factory=dict, description="Chunks whose document metadata contains all of these."
    )

    _metadata = field_validator("metadata")(_check_metadata)


class SearchIn(StrictModel):
    query: str = Field(min_length=1, max_length=2000)
    limit: int = Field(default=10, ge=1, le=50)
    mode: SearchMode = SearchMode.HYBRID
    collection_ids: list[uuid.UUID] | None = Field(
        default=None, max_length=100, description="Default: every knowledge base."
    )
    filters: SearchFilters = Field(default_factory=SearchFilters)
    weights: FusionWeights | None = Field(
        default=None,
        description="Hybrid only: how much the vector and the keyword list count in the "
        "fusion, relative to each other (default: the platform's tuned weights).",
    )

    explain: bool = Field(
        default=False,
        description="Each result says its rank and score in each list and how they were fused.",
    )
    rerank: bool | None = Field(
        default=None,
        description="Reorder the best passages with the platform's reranker (default: when a "
        "knowledge base searched turns reranking on).",
    )

    @model_validator(mode="after")
    def _weights_need_hybrid(self) -> SearchIn:
        if self.weights is not None and self.mode is not SearchMode.HYBRID:
            raise ValueError("weights apply to hybrid search only; drop them or use mode hybrid")
        return self


class PassageOut(ResponseModel):
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    collection_id: uuid.UUID
    title: str
    text: str
    heading: str
    page: int | None
    ordinal: int = Field(description="The passage's position in its document, from 0.")
    metadata: dict[str, Any]


class ListPlace(ResponseModel):
    rank: int
    score: float = Field(description="vector: cosine similarity; keyword: its rank's score.")


class FusionOut(ResponseModel):
    method: str
    vector: float
    keyword: float


class Explanation(ResponseModel):
    """Why a hit ranks where it does: its place in each list and how they were fused."""

    vector: ListPlace | None = Field(description="Absent from the vector candidates: null.")
    keyword: ListPlace | None = Field(description="Absent from the keyword candidates: null.")
    fused_score: float
    fusion: FusionOut | None = Field(description="Hybrid mode's fusion; null for one list.")
    rerank_score: float | None = Field(description="The reranker's score; null unreranked.")

    @classmethod
    def of(cls, hit: Hit) -> Explanation:
        def place(rank: int | None, score: float | None) -> ListPlace | None:
            return None if rank is None or score is None else ListPlace(rank=rank, score=score)

        fusion = hit.fusion
        return cls(
            vector=place(hit.vector_rank, hit.vector_score),
            keyword=place(hit.keyword_rank, hit.keyword_score),
            fused_score=hit.fused_score,
            rerank_score=hit.rerank_score,
            fusion=None
            if fusion is None
            else FusionOut(
                method=fusion.method.value, vector=fusion.vector, keyword=fusion.keyword
            ),
        )


class SearchResult(PassageOut):
    score: float
    vector_rank: int | None
    keyword_rank: int | None
    explain: Explanation | None = Field(default=None, description='Only with "explain": true.')

    @classmethod
    def of(cls, hit: Hit, explain: bool) -> SearchResult:
        result = cls.model_validate(hit)
        return result.model_copy(update={"explain": Explanation.of(hit)}) if explain else result


class SearchOut(ResponseModel):
    mode: SearchMode
    results: list[SearchResult]


class StatsOut(ResponseModel):
    collections: int
    documents: int
    by_status: dict[str, int]
    chunks: int
    tokens: int
    bytes: int


class EmbeddingModelOut(ResponseModel):
    name: str
    dimension: int
    max_tokens: int
    is_default: bool


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())


async def _from_form(request: Request) -> Upload:
    try:
        async with request.form(max_files=1, max_fields=8) as form:
            file = form.get("file")
            if not isinstance(file, UploadFile):
                raise InvalidInput("Send the document in a multipart field named 'file'.")
            raw: dict[str, Any] = {
                k: v for k, v in form.items() if k != "file" and isinstance(v, str)
            }
            data = await file.read()
            filename, content_type = file.filename, file.content_type
    except MultiPartException as exc:
        raise InvalidInput(f"The multipart body could not be read: {exc.message}.") from exc
    if "metadata" in raw:
        try:
            raw["metadata"] = json.loads(raw["metadata"])
        except json.JSONDecodeError as exc:
            raise InvalidInput("The 'metadata' field must be a JSON object.") from exc
    try:
        fields = FormFields.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(_validation_message(exc)) from exc
    return Upload(
        data=data,
        filename=filename,
        content_type=content_type,
        title=fields.title,
        description=fields.description,
        collection=fields.collection,
        metadata=dict(fields.metadata),
    )


async def _from_json(request: Request) -> Upload:
    try:
        body = TextDocumentIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidInput(_validation_message(exc)) from exc
    return Upload(
        data=body.text.encode(),
        filename=None,
        content_type=body.content_type,
        title=body.title,
        description=body.description,
        collection=body.collection,
        metadata=dict(body.metadata),
    )


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "title": {"type": "string"},
                        "description": {"type": "string"},
                        "collection": {"type": "string", "description": "id or name"},
                        "metadata": {"type": "string", "description": "a JSON object"},
                    },
                }
            },
            "application/json": {"schema": TextDocumentIn.model_json_schema()},
        },
    }
}


@router.post(
    "/documents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadOut,
    summary="Upload a document (multipart file, or JSON text); ingestion runs in the background",
    openapi_extra=_UPLOAD_BODY,
    responses={200: {"model": UploadOut, "description": "The same content was already there."}},
)
async def upload(request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> JSONResponse:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        upload = await _from_form(request)
    elif content_type.startswith("application/json"):
        upload = await _from_json(request)
    else:
        raise UnsupportedMediaType(
            "Send multipart/form-data with the document in a 'file' field, or application/json "
            'with {"text": ..., "title": ...}.'
        )
    result = await runtime.documents.upload(principal, upload)
    out = UploadOut.model_validate(
        {**DocumentOut.model_validate(result.document).model_dump(), "duplicate": result.duplicate}
    )
    return JSONResponse(
        out.model_dump(mode="json"),
        status_code=status.HTTP_200_OK if result.duplicate else status.HTTP_202_ACCEPTED,
    )


@router.get("/documents", response_model=Page[DocumentOut])
async def list_documents(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    paging: PagingDep,
    collection_id: Annotated[uuid.UUID | None, Query()] = None,
    status_: Annotated[
        Literal["queued", "processing", "ready", "failed"] | None, Query(alias="status")
    ] = None,
) -> Page[DocumentOut]:
    items, total = await runtime.documents.list(
        principal,
        limit=paging.limit,
        offset=paging.offset,
        collection_id=collection_id,
        status=status_,
    )
    return Page[DocumentOut].of([DocumentOut.model_validate(d) for d in items], total, paging)


@router.get("/documents/{document_id}", response_model=DocumentOut)
async def get_document(
    document_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep
) -> DocumentOut:
    return DocumentOut.model_validate(await runtime.documents.get(principal, document_id))


@router.delete("/documents/{document_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_document(
    document_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep
) -> None:
    await runtime.documents.delete(principal, document_id)


@router.post("/search", response_model=SearchOut)
async def search(body: SearchIn, principal: PrincipalDep, runtime: RuntimeDep) -> SearchOut:
    hits = await runtime.retriever.search(
        principal,
        SearchQuery(
            query=body.query,
            limit=body.limit,
            mode=body.mode,
            collection_ids=body.collection_ids,
            document_ids=body.filters.document_ids,
            metadata=dict(body.filters.metadata),
            weights=body.weights.to_weights() if body.weights else None,
            rerank=body.rerank,
        ),
    )
    return SearchOut(mode=body.mode, results=[SearchResult.of(h, body.explain) for h in hits])


@router.get(
    "/chunks/{chunk_id}", response_model=PassageOut, summary="A passage, e.g. a citation's chunk"
)
async def passage(chunk_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep) -> PassageOut:
    return PassageOut.model_validate(await runtime.retriever.passage(principal, chunk_id))


@router.get("/stats", response_model=StatsOut)
async def stats(principal: PrincipalDep, runtime: RuntimeDep) -> StatsOut:
    return StatsOut.model_validate(await runtime.documents.stats(principal))


@router.get("/embedding-models", response_model=list[EmbeddingModelOut])
async def embedding_models(principal: PrincipalDep, runtime: RuntimeDep) -> list[EmbeddingModelOut]:
    principal.require_tenant()
    default = runtime.embedders.default_name
    return [
        EmbeddingModelOut(
            name=e.name,
            dimension=e.dimension,
            max_tokens=e.max_tokens,
            is_default=e.name == default,
        )
        for e in map(runtime.embedders.get, runtime.embedders.names())
    ]


@router.post("/collections", status_code=status.HTTP_201_CREATED, response_model=CollectionOut)
async def create_collection(
    body: CollectionIn, principal: PrincipalDep, runtime: RuntimeDep
) -> CollectionOut:
    collection = await runtime.knowledge_bases.create(
        principal,
        name=body.name,
        description=body.description,
        embedding_model=body.embedding_model,
        weights=body.weights.to_weights() if body.weights else None,
        rerank=body.rerank,
        language=body.language,
    )
    return CollectionOut.of(collection)


@router.get("/collections", response_model=Page[CollectionOut])
async def list_collections(
    principal: PrincipalDep, runtime: RuntimeDep, paging: PagingDep
) -> Page[CollectionOut]:
    items, total = await runtime.knowledge_bases.list(
        principal, limit=paging.limit, offset=paging.offset
    )
    return Page[CollectionOut].of([CollectionOut.of(c) for c in items], total, paging)


@router.get("/collections/{collection_id}", response_model=CollectionOut)
async def get_collection(
    collection_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep
) -> CollectionOut:
    return CollectionOut.of(await runtime.knowledge_bases.get(principal, collection_id))


@router.patch("/collections/{collection_id}", response_model=CollectionChanged)
async def update_collection(
    collection_id: uuid.UUID, body: CollectionPatch, principal: PrincipalDep, runtime: RuntimeDep
) -> CollectionChanged:
    change = await runtime.knowledge_bases.update(
        principal,
        collection_id,
        name=body.name,
        description=body.description,
        embedding_model=body.embedding_model,
        weights=body.weights.to_weights() if body.weights else None,
        reset_weights="weights" in body.model_fields_set and body.weights is None,
        rerank=body.rerank,
        language=body.language,
    )
    return CollectionChanged(
        **CollectionOut.of(change.collection).model_dump(),
        reembedding=change.reembedding,
    )


@router.delete("/collections/{collection_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_collection(
    collection_id: uuid.UUID, principal: PrincipalDep, runtime: RuntimeDep
) -> None:
    await runtime.knowledge_bases.delete(principal, collection_id)
