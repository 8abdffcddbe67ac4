"""Documents in prompts through each official SDK against the running system: Anthropic
`document` blocks, OpenAI Chat `file` parts, Responses `input_file` and Gemini `inlineData`
(application/pdf) reach every upstream that reads PDFs in its own form (the strict mock checks
the form and counts the attachment in the usage), and a clear 400 in the client's own protocol
comes back from the upstreams that read none (Mistral/Devstral, DeepSeek)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import CLIENT_KEY, SluiceSystem, upstream_matrix

UPSTREAMS = ["openai", "anthropic", "gemini", "mistral", "deepseek"]
READS_PDF = ["openai", "anthropic", "gemini"]
NO_PDF = ["mistral", "deepseek"]
PDF = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] "
       b"/Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n") * 4
PDF_B64 = base64.b64encode(PDF).decode()
ATTACHMENT_TOKENS = len(PDF_B64) // 16  # the mock counts a quarter of the base64 as characters
QUESTION = "Summarize this document"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    running = upstream_matrix(tmp_path_factory.mktemp("documents"), redis_url, UPSTREAMS)
    yield running
    running.close()


def _openai(system: SluiceSystem) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=CLIENT_KEY, max_retries=0)


def _anthropic(system: SluiceSystem) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=system.base_url, api_key=CLIENT_KEY, max_retries=0)


def _gemini(system: SluiceSystem) -> genai.Client:
    return genai.Client(api_key=CLIENT_KEY, http_options=types.HttpOptions(base_url=system.base_url))


# --- OpenAI Chat: file parts -------------------------------------------------------------------


def _chat_tokens(system: SluiceSystem, model: str, with_file: bool, stream: bool = False) -> int:
    content: Any = [{"type": "text", "text": QUESTION}]
    if with_file:
        content.append({"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF_B64}",
                                                 "filename": "report.pdf"}})
    messages: Any = [{"role": "user", "content": content}]
    client = _openai(system)
    if stream:
        chunks = list(client.chat.completions.create(model=model, messages=messages, stream=True,
                                                     stream_options={"include_usage": True}))
        usage = chunks[-1].usage
    else:
        usage = client.chat.completions.create(model=model, messages=messages).usage
    assert usage is not None
    return usage.prompt_tokens


@pytest.mark.parametrize("upstream", READS_PDF)
def test_chat_file_part_reaches_upstream(system: SluiceSystem, upstream: str) -> None:
    model = f"via-{upstream}"
    assert _chat_tokens(system, model, True) - _chat_tokens(system, model, False) >= ATTACHMENT_TOKENS


@pytest.mark.parametrize("stream", [False, True], ids=["sync", "stream"])
@pytest.mark.parametrize("upstream", NO_PDF)
def test_chat_file_part_refused_where_unreadable(system: SluiceSystem, upstream: str, stream: bool) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _chat_tokens(system, f"via-{upstream}", True, stream)
    assert info.value.param == "document" and "PDF document" in info.value.message


# --- Responses: input_file --------------------------------------------------------------------


def _responses_tokens(system: SluiceSystem, model: str, with_file: bool) -> int:
    content: Any = [{"type": "input_text", "text": QUESTION}]
    if with_file:
        content.append({"type": "input_file", "filename": "report.pdf",
                        "file_data": f"data:application/pdf;base64,{PDF_B64}"})
    made = _openai(system).responses.create(model=model, input=[{"role": "user", "content": content}],
                                            store=False)
    assert made.usage is not None
    return made.usage.input_tokens


def test_responses_input_file(system: SluiceSystem) -> None:
    for upstream in ("anthropic", "gemini"):
        model = f"via-{upstream}"
        assert _responses_tokens(system, model, True) - _responses_tokens(system, model, False) >= ATTACHMENT_TOKENS
    with pytest.raises(openai.BadRequestError) as info:
        _responses_tokens(system, "via-mistral", True)
    assert info.value.param == "document"


# --- Anthropic: document blocks ---------------------------------------------------------------


def _anthropic_tokens(system: SluiceSystem, model: str, document: dict[str, Any] | None) -> int:
    content: Any = [{"type": "text", "text": QUESTION}] + ([document] if document else [])
    message = _anthropic(system).messages.create(model=model, max_tokens=64,
                                                 messages=[{"role": "user", "content": content}])
    return message.usage.input_tokens


BASE64_DOC = {"type": "document", "title": "report.pdf",
              "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64}}
URL_DOC = {"type": "document", "source": {"type": "url", "url": "https://example.com/report.pdf"}}
TEXT_DOC = {"type": "document", "title": "notes", "source": {"type": "text", "media_type": "text/plain",
                                                             "data": "The quarterly numbers went up. " * 10}}


@pytest.mark.parametrize("upstream", READS_PDF)
def test_anthropic_pdf_document(system: SluiceSystem, upstream: str) -> None:
    model = f"via-{upstream}"
    assert _anthropic_tokens(system, model, BASE64_DOC) - _anthropic_tokens(system, model, None) >= ATTACHMENT_TOKENS


def test_anthropic_url_and_text_documents(system: SluiceSystem) -> None:
    for upstream in ("anthropic", "gemini"):  # the upstreams that take a PDF by URL
        model = f"via-{upstream}"
        assert _anthropic_tokens(system, model, URL_DOC) > _anthropic_tokens(system, model, None)
    with pytest.raises(anthropic.BadRequestError) as url_refused:
        _anthropic_tokens(system, "via-openai", URL_DOC)
    assert "by URL" in str(url_refused.value)
    for upstream in UPSTREAMS:  # a text document is text to everyone, Mistral/Devstral included
        model = f"via-{upstream}"
        assert _anthropic_tokens(system, model, TEXT_DOC) - _anthropic_tokens(system, model, None) >= 70
    with pytest.raises(anthropic.BadRequestError) as pdf_refused:
        _anthropic_tokens(system, "via-mistral", BASE64_DOC)
    assert pdf_refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "PDF document" in pdf_refused.value.body["error"]["message"]  # type: ignore[index]


# --- Gemini: inlineData application/pdf -------------------------------------------------------


def _gemini_tokens(system: SluiceSystem, model: str, with_file: bool) -> int:
    parts = [types.Part.from_text(text=QUESTION)]
    if with_file:
        parts.append(types.Part.from_bytes(data=PDF, mime_type="application/pdf"))
    client = _gemini(system)  # kept in a name: a collected client closes its connection pool
    answer = client.models.generate_content(model=model, contents=[types.Content(role="user", parts=parts)])
    assert answer.usage_metadata is not None and answer.usage_metadata.prompt_token_count is not None
    return answer.usage_metadata.prompt_token_count


@pytest.mark.parametrize("upstream", READS_PDF)
def test_gemini_inline_pdf(system: SluiceSystem, upstream: str) -> None:
    model = f"via-{upstream}"
    assert _gemini_tokens(system, model, True) - _gemini_tokens(system, model, False) >= ATTACHMENT_TOKENS


def test_gemini_inline_pdf_refused_where_unreadable(system: SluiceSystem) -> None:
    with pytest.raises(genai_errors.ClientError) as info:
        _gemini_tokens(system, "via-deepseek", True)
    assert info.value.code == 400 and "PDF document" in str(info.value.message)
