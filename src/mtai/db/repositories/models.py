from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from mtai.db.models import LLMModel


async def list_all(session: AsyncSession) -> list[LLMModel]:
    result = await session.execute(select(LLMModel).order_by(LLMModel.name))
    return list(result.scalars())


async def get(session: AsyncSession, name: str) -> LLMModel | None:
    return await session.get(LLMModel, name)


async def upsert(session: AsyncSession, values: dict[str, Any]) -> LLMModel:
    statement = insert(LLMModel).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[LLMModel.name],
        set_={k: statement.excluded[k] for k in values if k != "name"},
    )
    await session.execute(statement)
    model = await session.get(LLMModel, values["name"], populate_existing=True)
    assert model is not None
    return model


async def delete(session: AsyncSession, model: LLMModel) -> None:
    await session.delete(model)
    await session.flush()


async def with_key_version(session: AsyncSession, version: bytes) -> list[LLMModel]:
    """Catalog models whose key's ciphertext starts with `version`."""
    result = await session.execute(
        select(LLMModel).where(func.substring(LLMModel.api_key_encrypted, 1, 1) == version)
    )
    return list(result.scalars())


async def replace_key_ciphertext(session: AsyncSession, name: str, old: bytes, new: bytes) -> None:
    await session.execute(
        update(LLMModel)
        .where(LLMModel.name == name, LLMModel.api_key_encrypted == old)
        .values(api_key_encrypted=new)
    )
