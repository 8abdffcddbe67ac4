"""Documents by `file_id` through the official SDKs against the running system: a file uploaded to
Sluice's own Files API (`openai` `files.create(purpose="user_data")`, `anthropic`
`beta.files.upload`) and referred to from a prompt (Chat `file` part, Responses `input_file`,
Anthropic `document` with a `file` source) reaches the upstream exactly as the same file sent
inline would: the strict mock counts the attachment in the usage, so equal usage means the same
document arrived. Another tenant's id, an unknown id and a deleted file are 404s in the client's
own protocol, and nothing reaches the upstream for them."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import CLIENT_KEY, OTHER_CLIENT_KEY, SluiceSystem, upstream_matrix

UPSTREAMS = ["openai", "anthropic", "gemini", "mistral"]
READS_PDF = ["openai", "anthropic", "gemini"]
PDF = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] "
       b"/Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n") * 4
PDF_URI = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
ATTACHMENT_TOKENS = len(base64.b64encode(PDF)) // 16  # the mock counts a quarter of the base64 as characters
NOTES = "The quarterly numbers went up. " * 10
QUESTION = "Summarize this document"
BODY_LIMIT = 64 * 1024  # also the largest file a prompt may name (uploads have their own limit)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SluiceSystem]:
    running = upstream_matrix(tmp_path_factory.mktemp("file-documents"),
                              redis_url, UPSTREAMS, extra={"request_limits": {"max_body_bytes": BODY_LIMIT}})
    yield running
    running.close()


def _openai(system: SluiceSystem, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{system.base_url}/v1", api_key=key, max_retries=0)


def _anthropic(system: SluiceSystem, key: str = CLIENT_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=system.base_url, api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def pdf_id(system: SluiceSystem) -> str:
    made = _openai(system).files.create(file=("report.pdf", PDF), purpose="user_data")
    assert made.purpose == "user_data" and made.bytes == len(PDF) and made.filename == "report.pdf"
    return made.id


def _chat_tokens(client: openai.OpenAI, model: str, part: dict[str, Any] | None, stream: bool = False) -> int:
    content: Any = [{"type": "text", "text": QUESTION}] + ([part] if part else [])
    messages: Any = [{"role": "user", "content": content}]
    if stream:
        chunks = list(client.chat.completions.create(model=model, messages=messages, stream=True,
                                                     stream_options={"include_usage": True}))
        usage = chunks[-1].usage
    else:
        usage = client.chat.completions.create(model=model, messages=messages).usage
    assert usage is not None
    return usage.prompt_tokens


@pytest.mark.parametrize("stream", [False, True], ids=["sync", "stream"])
@pytest.mark.parametrize("upstream", READS_PDF)
def test_chat_file_id_converts_like_file_data(system: SluiceSystem, pdf_id: str, upstream: str,
                                              stream: bool) -> None:
    client, model = _openai(system), f"via-{upstream}"
    by_id = _chat_tokens(client, model, {"type": "file", "file": {"file_id": pdf_id}}, stream)
    inline = _chat_tokens(client, model, {"type": "file", "file": {"file_data": PDF_URI, "filename": "report.pdf"}},
                          stream)
    assert by_id == inline and by_id - _chat_tokens(client, model, None, stream) >= ATTACHMENT_TOKENS


def test_responses_file_id_and_its_chain(system: SluiceSystem, pdf_id: str) -> None:
    client = _openai(system)

    def made(model: str, content: list[dict[str, Any]]) -> Any:
        return client.responses.create(model=model, input=[{"role": "user", "content": content}])  # type: ignore[misc,list-item]

    question = {"type": "input_text", "text": QUESTION}
    for upstream in ("anthropic", "gemini"):
        model = f"via-{upstream}"
        first = made(model, [question, {"type": "input_file", "file_id": pdf_id}])
        inline = made(model, [question, {"type": "input_file", "file_data": PDF_URI, "filename": "report.pdf"}])
        assert first.usage.input_tokens == inline.usage.input_tokens
        assert first.usage.input_tokens - made(model, [question]).usage.input_tokens >= ATTACHMENT_TOKENS
        # the stored Response keeps the reference; its continuation reads the file again
        after = client.responses.create(model=model, previous_response_id=first.id, input="And the totals?")
        assert after.usage is not None and after.usage.input_tokens > first.usage.input_tokens
        items = client.responses.input_items.list(first.id)
        assert any(getattr(c, "file_id", None) == pdf_id for item in items.data for c in getattr(item, "content", []))
    with pytest.raises(openai.BadRequestError) as info:  # Mistral/Devstral reads no PDF, by id or inline
        made("via-mistral", [question, {"type": "input_file", "file_id": pdf_id}])
    assert info.value.param == "document"


def _anthropic_tokens(client: anthropic.Anthropic, model: str, document: dict[str, Any] | None) -> int:
    content: Any = [{"type": "text", "text": QUESTION}] + ([document] if document else [])
    return client.messages.create(model=model, max_tokens=64,
                                  messages=[{"role": "user", "content": content}]).usage.input_tokens


@pytest.mark.parametrize("upstream", READS_PDF)
def test_anthropic_file_source_converts_like_base64(system: SluiceSystem, upstream: str) -> None:
    client, model = _anthropic(system), f"via-{upstream}"
    uploaded = client.beta.files.upload(file=("report.pdf", PDF, "application/pdf"))
    assert uploaded.type == "file" and uploaded.size_bytes == len(PDF) and uploaded.mime_type == "application/pdf"
    assert client.beta.files.retrieve_metadata(uploaded.id).filename == "report.pdf"
    by_id = _anthropic_tokens(client, model, {"type": "document", "title": "report.pdf",
                                              "source": {"type": "file", "file_id": uploaded.id}})
    inline = _anthropic_tokens(client, model, {"type": "document", "title": "report.pdf", "source": {
        "type": "base64", "media_type": "application/pdf", "data": base64.b64encode(PDF).decode()}})
    assert by_id == inline and by_id - _anthropic_tokens(client, model, None) >= ATTACHMENT_TOKENS
    assert client.beta.files.delete(uploaded.id).id == uploaded.id
    with pytest.raises(anthropic.NotFoundError):  # deleted: gone for prompts too
        _anthropic_tokens(client, model, {"type": "document", "source": {"type": "file", "file_id": uploaded.id}})


def test_text_file_reaches_every_upstream(system: SluiceSystem) -> None:
    client = _anthropic(system)
    uploaded = client.beta.files.upload(file=("notes.txt", NOTES.encode(), "text/plain"))
    for upstream in UPSTREAMS:  # a text file is text to everyone, Mistral/Devstral included
        model = f"via-{upstream}"
        by_id = _anthropic_tokens(client, model, {"type": "document", "title": "notes",
                                                  "source": {"type": "file", "file_id": uploaded.id}})
        inline = _anthropic_tokens(client, model, {"type": "document", "title": "notes",
                                                   "source": {"type": "text", "media_type": "text/plain",
                                                              "data": NOTES}})
        assert by_id == inline and by_id - _anthropic_tokens(client, model, None) >= 70


def test_another_tenants_file_is_not_found(system: SluiceSystem, pdf_id: str) -> None:
    before = system.mock_stats()["requests"]
    with pytest.raises(openai.NotFoundError) as chat:
        _chat_tokens(_openai(system, OTHER_CLIENT_KEY), "via-openai", {"type": "file", "file": {"file_id": pdf_id}})
    assert chat.value.param == "file_id" and chat.value.body["message"] == f"No such File object: {pdf_id}"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as messages:
        _anthropic_tokens(_anthropic(system, OTHER_CLIENT_KEY), "via-anthropic",
                          {"type": "document", "source": {"type": "file", "file_id": pdf_id}})
    assert messages.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    # the same answer as an id that never existed: nothing tells the stranger the file is there
    with pytest.raises(openai.NotFoundError) as unknown:
        _chat_tokens(_openai(system), "via-openai", {"type": "file", "file": {"file_id": "file-0123456789abcdef"}})
    assert unknown.value.body["message"] == "No such File object: file-0123456789abcdef"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        _anthropic(system, OTHER_CLIENT_KEY).beta.files.retrieve_metadata(pdf_id)
    assert system.mock_stats()["requests"] == before  # refused before any upstream call
    assert _openai(system).files.retrieve(pdf_id).id == pdf_id  # still its owner's


def test_unreadable_file_is_refused(system: SluiceSystem) -> None:
    client = _openai(system)
    binary = client.files.create(file=("blob.bin", b"\x89PNG\r\n\x1a\n\x00\x00binary"), purpose="user_data")
    with pytest.raises(openai.BadRequestError) as info:
        _chat_tokens(client, "via-openai", {"type": "file", "file": {"file_id": binary.id}})
    assert info.value.param == "file_id" and "neither a PDF nor UTF-8 text" in info.value.message
    big = client.files.create(file=("big.txt", b"x" * (BODY_LIMIT + 1)), purpose="user_data")
    with pytest.raises(openai.BadRequestError) as too_big:
        _chat_tokens(client, "via-openai", {"type": "file", "file": {"file_id": big.id}})
    assert too_big.value.param == "file_id" and f"at most {BODY_LIMIT}" in too_big.value.message
    with pytest.raises(openai.BadRequestError) as purpose:
        client.files.create(file=("x.txt", b"x"), purpose="fine-tune")
    assert purpose.value.param == "purpose"


def test_count_tokens_reads_the_file(system: SluiceSystem) -> None:
    client = _anthropic(system)
    uploaded = client.beta.files.upload(file=("notes.txt", NOTES.encode(), "text/plain"))

    def counted(source: dict[str, Any]) -> int:
        content: Any = [{"type": "text", "text": QUESTION}, {"type": "document", "source": source}]
        return client.messages.count_tokens(model="via-anthropic",
                                            messages=[{"role": "user", "content": content}]).input_tokens

    assert counted({"type": "file", "file_id": uploaded.id}) == counted(
        {"type": "text", "media_type": "text/plain", "data": NOTES}) > 70
