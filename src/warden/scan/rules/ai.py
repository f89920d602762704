"""AI provider API keys: OpenAI, Anthropic, Hugging Face, Groq, Replicate, Perplexity, xAI,
LangSmith, Tavily, Firecrawl, Jina."""

from __future__ import annotations

from typing import Any

from warden.scan.model import Confidence, Severity
from warden.scan.rule import Candidate, Check, Rule, Tier
from warden.scan.rules import replacements as r


def _openai(candidate: Candidate) -> Check:
    # "T3BlbkFJ" is base64 of "OpenAI"; every key issued since 2023 carries it.
    marked = "T3BlbkFJ" in candidate.secret
    kind = candidate.secret.split("-")[1] if candidate.secret.count("-") >= 2 else "user"
    return Check(
        confidence=Confidence.HIGH if marked else Confidence.MEDIUM,
        identifier=f"{kind} key" if kind in ("proj", "svcacct", "admin") else None,
    )


def _ai_rule(
    rule_id: str, name: str, provider: str, pattern: str, prefix: str, example: str, **extra: Any
) -> Rule:
    return Rule(
        id=rule_id,
        name=name,
        provider=provider,
        kind="api_key",
        tier=Tier.PROVIDER,
        severity=Severity.HIGH,
        replacement=r.SECRET_STORE,
        pattern=pattern,
        prefix=prefix,
        examples=(example,),
        negative_examples=(
            f"{prefix}<your-key>",
            f"{prefix}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ),
        **extra,
    )


RULES = (
    _ai_rule(
        "openai-api-key",
        "OpenAI API key",
        "OpenAI",
        r"\b(?P<secret>sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}"
        r"|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}|[A-Za-z0-9]{48}))(?![A-Za-z0-9_-])",
        "sk-",
        'OPENAI_API_KEY="sk-proj-Xlx8RtCqtD1GDIWFmbKGYQr8T3BlbkFJ3wlMvTgbqvXQqwuW8Y9XW1tSnBc0np9B"',
        anchor=r"sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20}|[A-Za-z0-9]{48})",
        check=_openai,
        description="`sk-`, optionally `proj-`, `svcacct-` or `admin-`, then base64url "
        "characters around the marker `T3BlbkFJ`; keys before 2023 are `sk-` and 48 base62 "
        "characters.",
    ),
    _ai_rule(
        "anthropic-api-key",
        "Anthropic API key",
        "Anthropic",
        r"\b(?P<secret>sk-ant-(?:api|admin)\d\d-[A-Za-z0-9_-]{80,120})(?![A-Za-z0-9_-])",
        "sk-ant-",
        "ANTHROPIC_API_KEY=sk-ant-api03-bpvjhzifE5128eNz6OrSZ3e1eYhFVG0Tp4lxWvY5gX4llUGp4sGFkm"
        "DElfTVsO4UwhIn2defC4c9LGfliJda80U3VHh-6iAA",
        anchor=r"sk-ant-(?:api|admin)\d\d-[A-Za-z0-9_-]{80}",
        confidence=Confidence.HIGH,
        description="`sk-ant-api03-` (or `sk-ant-admin01-`) followed by about 95 base64url "
        "characters ending in `AA`.",
    ),
    _ai_rule(
        "huggingface-token",
        "Hugging Face access token",
        "Hugging Face",
        r"\b(?P<secret>(?:hf|api_org)_[A-Za-z]{34})\b",
        "hf_",
        'HF_TOKEN="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"',
        description="`hf_` (user) or `api_org_` (organisation) followed by 34 letters.",
    ),
    _ai_rule(
        "groq-api-key",
        "Groq API key",
        "Groq",
        r"\b(?P<secret>gsk_[A-Za-z0-9]{52})\b",
        "gsk_",
        "GROQ_API_KEY=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",
        description="`gsk_` followed by 52 base62 characters.",
    ),
    _ai_rule(
        "replicate-api-token",
        "Replicate API token",
        "Replicate",
        r"\b(?P<secret>r8_[A-Za-z0-9]{37})\b",
        "r8_",
        "REPLICATE_API_TOKEN=r8_9Udk7Z3KhXXZUon6uZ3FCH2n6WSZ1mvw4SKdW",
        description="`r8_` followed by 37 base62 characters.",
    ),
    _ai_rule(
        "perplexity-api-key",
        "Perplexity API key",
        "Perplexity",
        r"\b(?P<secret>pplx-[A-Za-z0-9]{48})\b",
        "pplx-",
        "PPLX_API_KEY=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",
        description="`pplx-` followed by 48 base62 characters.",
    ),
    _ai_rule(
        "xai-api-key",
        "xAI API key",
        "xAI",
        r"\b(?P<secret>xai-[A-Za-z0-9]{80})\b",
        "xai-",
        "XAI_API_KEY=xai-uJDMB0LO5UHWfCFWn05Gq59Pb2P1JJeE5bzXsm9gvjoucOmKkV9Ikdf92qrjvWeRkipW8wXmWarqp1qh",
        description="`xai-` followed by 80 base62 characters.",
    ),
    _ai_rule(
        "langsmith-api-key",
        "LangSmith API key",
        "LangChain",
        r"\b(?P<secret>lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10})\b",
        "lsv2_",
        "LANGSMITH_API_KEY=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",
        description="`lsv2_pt_` (personal) or `lsv2_sk_` (service) key: 32 and 10 "
        "hexadecimal characters separated by `_`.",
    ),
    _ai_rule(
        "tavily-api-key",
        "Tavily API key",
        "Tavily",
        r"\b(?P<secret>tvly-(?:dev-)?[A-Za-z0-9]{32})\b",
        "tvly-",
        "TAVILY_API_KEY=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",
        description="`tvly-` (or `tvly-dev-`) followed by 32 base62 characters.",
    ),
    _ai_rule(
        "firecrawl-api-key",
        "Firecrawl API key",
        "Firecrawl",
        r"\b(?P<secret>fc-[0-9a-f]{32})\b",
        "fc-",
        'app = FirecrawlApp(api_key="fc-f506b40928b5b7a767c76fb008f86beb")',
        description="`fc-` followed by 32 hexadecimal characters.",
    ),
    _ai_rule(
        "jina-api-key",
        "Jina AI API key",
        "Jina AI",
        r"\b(?P<secret>jina_[a-f0-9]{32}[A-Za-z0-9_-]{28})(?![A-Za-z0-9_-])",
        "jina_",
        "JINA_KEY=jina_f506b40928b5b7a767c76fb008f86bebpf9dqcUgxM9ZZ810pkf6Xlx8RtCq",
        anchor=r"jina_[a-f0-9]{32}[A-Za-z0-9_-]{28}",
        description="`jina_`, 32 hexadecimal characters and 28 base64url characters.",
    ),
)
