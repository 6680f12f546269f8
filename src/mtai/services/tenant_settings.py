"""The settings a tenant carries that the platform acts on; other keys are kept as given."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mtai.errors import InvalidInput
from mtai.services.limits import LimitSettings


class TenantSettings(BaseModel):
    model_config = ConfigDict(extra="allow")

    allowed_models: list[str] | None = Field(
        default=None, description="Models the tenant may use; absent means every enabled model."
    )
    default_model: str | None = Field(default=None, description="Used when a request names none.")
    log_prompts: bool = Field(default=False, description="Keep prompt and response text.")
    prompt_log_retention_days: int = Field(default=30, ge=1, le=3650)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    cache_enabled: bool = Field(default=False, description="Allow the exact-match response cache.")
    cache_shared: bool = Field(
        default=False,
        description="Share cached answers between the tenant's users and keys; by default each "
        "user or key reads only answers cached for its own requests.",
    )
    cache_ttl_seconds: int = Field(default=3600, ge=10, le=7 * 86400)
    max_documents: int | None = Field(
        default=None, ge=0, description="Documents the tenant may hold; absent: the platform's."
    )
    max_upload_bytes: int | None = Field(
        default=None, ge=1, description="Largest document; absent: the platform's (never above)."
    )


def parse(raw: dict[str, Any]) -> TenantSettings:
    try:
        return TenantSettings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"Invalid tenant settings: {problems}") from exc
