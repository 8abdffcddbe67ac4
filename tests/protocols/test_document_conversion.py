"""Documents convert between every client protocol and every upstream through one internal
`Document` part: each client's form parses to the same part, each upstream gets its own form,
and the upstreams that read no PDFs refuse with a 400 naming the document."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from shared.errors import GatewayError
from shared.model import ChatRequest, Document, Message, Text
from shared.protocols import (
    anthropic_messages,
    anthropic_upstream,
    gemini,
    gemini_upstream,
    mistral,
    openai_chat,
    openai_chat_upstream,
    openai_responses,
)

PDF64 = base64.b64encode(b"%PDF-1.4 tiny").decode()
URI = f"data:application/pdf;base64,{PDF64}"
PDF_DOC = Document(data=PDF64, media_type="application/pdf", title="a.pdf")
URL_DOC = Document(url="https://example.com/a.pdf", media_type="application/pdf")
TEXT_DOC = Document(text="Line one.", media_type="text/plain", title="notes")


def _parsed(dialect: Any, body: dict[str, Any], *args: Any) -> list[Any]:
    return list(dialect.parse_request(orjson.dumps(body), *args).messages[0].content)


# --- client forms -> Document --------------------------------------------------------------------


def test_anthropic_document_blocks() -> None:
    blocks = [{"type": "document", "title": "a.pdf",
               "source": {"type": "base64", "media_type": "application/pdf", "data": PDF64}},
              {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"},
               "citations": {"enabled": False}, "context": "From 2024."},
              {"type": "document", "title": "notes", "source": {"type": "text", "media_type": "text/plain",
                                                                "data": "Line one."}}]
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": blocks}]}
    assert _parsed(anthropic_messages, body) == [PDF_DOC, URL_DOC, Text("From 2024."), TEXT_DOC]


def test_openai_chat_file_part() -> None:
    part = {"type": "file", "file": {"file_data": URI, "filename": "a.pdf"}}
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, part]}]}
    assert _parsed(openai_chat, body) == [Text("x"), PDF_DOC]
    text = {"type": "file", "file": {"file_data": "data:text/plain;base64,"
                                     + base64.b64encode(b"Line one.").decode(), "filename": "notes"}}
    assert _parsed(openai_chat, {"model": "m", "messages": [{"role": "user", "content": [text]}]}) == [TEXT_DOC]


def test_responses_input_file() -> None:
    content = [{"type": "input_file", "file_data": URI, "filename": "a.pdf"},
               {"type": "input_file", "file_url": "https://example.com/a.pdf"}]
    body = {"model": "m", "input": [{"role": "user", "content": content}]}
    assert _parsed(openai_responses, body) == [PDF_DOC, URL_DOC]


def test_gemini_pdf_parts() -> None:
    parts = [{"inlineData": {"mimeType": "application/pdf", "data": PDF64, "displayName": "a.pdf"}},
             {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/a.pdf"}}]
    assert _parsed(gemini, {"contents": [{"role": "user", "parts": parts}]}, "m", False) == [PDF_DOC, URL_DOC]


def test_file_id_references_parse_unresolved() -> None:
    """A `file_id` stays a reference until the API resolves it against the tenant's Files store
    (api/documents.py; e2e: tests/e2e/test_file_documents.py)."""
    ref = Document(file_id="file-1", title="a.pdf")
    chat = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_id": "file-1", "filename": "a.pdf"}}]}]}
    responses = {"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_file", "file_id": "file-1", "filename": "a.pdf"}]}]}
    anthropic = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "file", "file_id": "file-1"}, "title": "a.pdf"}]}]}
    assert _parsed(openai_chat, chat) == [ref]
    assert _parsed(openai_responses, responses) == [ref]
    assert _parsed(anthropic_messages, anthropic) == [ref]


@pytest.mark.parametrize(("dialect", "body", "param"), [
    (openai_chat, {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_data": "data:application/zip;base64,UEs="}}]}]},
     "messages[0].content[0].file.file_data"),
    (anthropic_messages, {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}]}]},
     "messages[0].content[0].source.media_type"),
    (anthropic_messages, {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "data": "x"}, "citations": {"enabled": True}}]}]},
     "messages[0].content[0].citations.enabled"),
])
def test_client_refusals_name_the_field(dialect: Any, body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as info:
        dialect.parse_request(orjson.dumps(body))
    assert info.value.status == 400 and info.value.param == param


# --- Document -> each upstream's form (goldens) ------------------------------------------------


def _request(*docs: Document) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message("user", [Text("Read"), *docs])])


def test_anthropic_upstream_blocks() -> None:
    body = anthropic_upstream.build_request(_request(PDF_DOC, URL_DOC, TEXT_DOC), "up")
    assert body["messages"][0]["content"][1:] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF64},
         "title": "a.pdf"},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Line one."},
         "title": "notes"}]


def test_openai_upstream_parts() -> None:
    body = openai_chat_upstream.build_request(_request(PDF_DOC, TEXT_DOC), "up")
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Read"},
        {"type": "file", "file": {"file_data": URI, "filename": "a.pdf"}},
        {"type": "text", "text": "notes\n\nLine one."}]
    with pytest.raises(GatewayError) as info:
        openai_chat_upstream.build_request(_request(URL_DOC), "up")
    assert info.value.status == 400 and info.value.param == "document"


def test_gemini_upstream_parts() -> None:
    body = gemini_upstream.build_request(_request(PDF_DOC, URL_DOC, TEXT_DOC), "up")
    assert body["contents"][0]["parts"] == [
        {"text": "Read"}, {"inlineData": {"mimeType": "application/pdf", "data": PDF64}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/a.pdf"}},
        {"text": "notes\n\nLine one."}]


def test_mistral_takes_text_documents_and_refuses_pdfs() -> None:
    body = mistral.build_request(_request(TEXT_DOC), "up")
    assert body["messages"][0]["content"] == "Readnotes\n\nLine one."
    for doc in (PDF_DOC, URL_DOC):
        with pytest.raises(GatewayError) as info:
            mistral.build_request(_request(doc), "up")
        assert info.value.status == 400 and info.value.param == "document" and "Mistral" in info.value.message
