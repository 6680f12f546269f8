"""Schemas shared by several routers."""

from __future__ import annotations

import uuid
from typing import Annotated, Generic, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

T = TypeVar("T")

# Deliberately lenient: self-hosted organisations use internal domains (.local, .lan, .corp)
# that strict validators reject. One '@', no spaces, sane length; stored lowercased.
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"),
    AfterValidator(str.lower),
]


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(ResponseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, items: list[T], total: int, paging: PagingLike) -> Page[T]:
        return cls(items=items, total=total, limit=paging.limit, offset=paging.offset)


class PagingLike(Protocol):
    limit: int
    offset: int


class CitationOut(ResponseModel):
    """A passage a RAG answer drew on; [number] in the answer refers to it."""

    number: int
    document_id: uuid.UUID
    title: str
    chunk_id: uuid.UUID
    snippet: str
    score: float
    heading: str = ""
    page: int | None = None


class ErrorResponse(BaseModel):
    detail: str
    code: str
    request_id: str | None
