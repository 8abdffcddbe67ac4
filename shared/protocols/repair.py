"""Every legal conversation of a client's protocol, made legal for the upstream that serves it.

Client protocols and upstreams disagree on what a conversation may look like. A client's
history is legal in its own protocol, and after parsing it is a list of user/assistant
messages in the internal model; `legalize(request, family)` rewrites that list so the
upstream's rules hold, and refuses (400, in the client's protocol) only what no faithful
repair exists for. It runs once per job, in the worker, right before the provider builds the
upstream body; `violations(request, family)` is the same rules written as a checker, used by
the property tests and cheap enough to skip the rewrite when nothing is wrong.

Rules every upstream shares (all four families):
- consecutive messages of one role are one turn;
- a user turn that answers tool calls puts its tool results first (text and images after);
- parts an upstream cannot carry are dropped before turns are counted (empty or blank text;
  reasoning another provider signed, or reasoning at all for Chat-shaped upstreams), and a
  turn left empty disappears;
- every tool call is answered in the next turn, and every tool result answers a call of the
  turn before it. A history that breaks this is illegal in every client protocol too, so it is
  refused rather than guessed at.

Per family:
- mistral (La Plateforme, Devstral on vLLM): no user message right after tool messages, so a
  user turn that carries tool results *and* text or images is split by an assistant turn
  (`MISTRAL_BRIDGE`); tool-call ids become 9 alphanumerics (a stable hash, both ways).
- anthropic: with thinking on, the assistant turn that made the pending tool calls must start
  with Anthropic's own signed thinking; a history from another provider has none, so thinking
  is turned off for that request instead.
- gemini: a turn of function calls must follow a user turn, so a history that opens with the
  model's calls gets an opening user turn (`GEMINI_OPENING`).
- openai (and every Chat-compatible server): the shared rules are all it needs.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from shared.errors import invalid
from shared.model import ChatRequest, Message, Part, Reasoning, Text, ToolCall, ToolResult
from shared.protocols.mistral import tool_call_id

Family = Literal["openai", "anthropic", "gemini", "mistral"]

MISTRAL_BRIDGE = "Tool results received."
"""The assistant turn inserted between tool results and the user's own words for Mistral."""

GEMINI_OPENING = "Continue the conversation."
"""The user turn inserted before a history that opens with the model's function calls."""

_SIGNING_PROVIDER: dict[Family, str | None] = {"anthropic": "anthropic", "gemini": "gemini",
                                                "openai": None, "mistral": None}


def family_of(provider: str) -> Family:
    """The rule set of an account's provider (every other provider speaks OpenAI's Chat)."""
    if provider in ("anthropic", "gemini", "mistral"):
        return provider  # type: ignore[return-value]
    return "openai"


# --- the checker -----------------------------------------------------------------------------


def violations(req: ChatRequest, family: Family) -> list[str]:
    """Each rule of `family` the request's conversation breaks, as a sentence; [] when legal.

    One pass over the parts (it runs on every job, long agent histories included).
    """
    found: list[str] = []
    messages = req.messages
    if not messages:
        return ["the conversation is empty"]
    asked: list[str] = []  # the calls of the previous turn
    previous_role = ""
    for i, m in enumerate(messages):
        role = m.role
        calls: list[str] = []
        results: list[str] = []
        other = misordered = False
        for p in m.content:
            if isinstance(p, ToolResult):
                results.append(p.tool_call_id)
                misordered = misordered or other
                continue
            other = True
            if isinstance(p, ToolCall):
                calls.append(p.id)
            elif isinstance(p, Text | Reasoning) and not _carried(p, family):
                found.append(f"messages[{i}]: a {type(p).__name__} part {family} cannot carry")
        if role == previous_role:
            found.append(f"messages[{i}]: a second {role} turn in a row")
        if not m.content:
            found.append(f"messages[{i}]: an empty turn")
        if role == "user":
            if misordered:
                found.append(f"messages[{i}]: tool results do not come first")
            if family == "mistral" and results and other:
                found.append(f"messages[{i}]: a user message would follow tool messages (Mistral)")
            if results != asked and sorted(results) != sorted(asked):
                found.append(f"messages[{i}]: results {results} do not answer the calls {asked} before them")
        elif calls and i == len(messages) - 1:
            found.append(f"messages[{i}]: tool calls {calls} are never answered")
        if family == "mistral":
            found += [f"messages[{i}]: tool-call id {c!r} is not 9 alphanumerics"
                      for c in calls + results if tool_call_id(c) != c]
        if family == "gemini" and calls and previous_role != "user":
            found.append(f"messages[{i}]: function calls do not follow a user turn (Gemini)")
        asked = calls if role == "assistant" else []
        previous_role = role
    if family == "anthropic" and req.reasoning_effort not in (None, "none") and not _thinking_leads(req):
        found.append("thinking is on but the pending tool calls' turn does not start with signed thinking")
    return found


def _carried(part: Part, family: Family) -> bool:
    if isinstance(part, Text):
        return bool(part.text.strip())
    if isinstance(part, Reasoning):
        own = _SIGNING_PROVIDER[family]
        if own is None:
            return False  # Chat-shaped upstreams take no reasoning in the history
        if family == "anthropic":
            return part.provider == own and bool(part.signature or part.redacted)
        return part.provider in (None, own)
    return True


def _thinking_leads(req: ChatRequest) -> bool:
    """Anthropic: the assistant turn whose tool calls are being answered starts with its thinking."""
    messages = req.messages
    if len(messages) < 2 or not any(isinstance(p, ToolResult) for p in messages[-1].content):
        return True
    last = messages[-2]
    if last.role != "assistant" or not any(isinstance(p, ToolCall) for p in last.content):
        return True
    first = last.content[0]
    return isinstance(first, Reasoning) and first.provider == "anthropic"


# --- the repair ------------------------------------------------------------------------------


def legalize(req: ChatRequest, family: Family) -> ChatRequest:
    """The request with a conversation `family` accepts; the same object when it already does.

    Raises GatewayError (400) when the history itself is broken: a tool call never answered, or
    a tool result that answers no call of the turn before it.
    """
    if not violations(req, family):
        return req
    messages = _turns(req.messages, family)
    _check_pairing(messages)
    effort = req.reasoning_effort
    if family == "mistral":
        messages = _mistral(messages)
    elif family == "gemini" and messages[0].role == "assistant" and _calls(messages[0]):
        messages.insert(0, Message(role="user", content=[Text(GEMINI_OPENING)]))
    fixed = msgspec.structs.replace(req, messages=messages)
    if family == "anthropic" and effort not in (None, "none") and not _thinking_leads(fixed):
        fixed = msgspec.structs.replace(fixed, reasoning_effort=None)
    return fixed


def _turns(messages: list[Message], family: Family) -> list[Message]:
    """Carried parts only, one turn per role change, tool results first in a user turn."""
    turns: list[Message] = []
    for m in messages:
        parts = [p for p in m.content if _carried(p, family)]
        if not parts:
            continue
        if turns and turns[-1].role == m.role:
            turns[-1].content.extend(parts)
        else:
            turns.append(Message(role=m.role, content=parts))
    if not turns:
        raise invalid("The conversation has no content to send: every message is empty.", "messages")
    for turn in turns:
        if turn.role == "user":
            turn.content.sort(key=lambda p: not isinstance(p, ToolResult))  # stable: order kept within
    return turns


def _calls(m: Message) -> list[ToolCall]:
    return [p for p in m.content if isinstance(p, ToolCall)]


def _check_pairing(turns: list[Message]) -> None:
    asked: list[str] = []
    for i, m in enumerate(turns):
        if m.role == "assistant":
            if asked:
                raise invalid(f"Tool calls {asked} are not answered by the turn after them; every tool "
                              "call needs its result in the next message.", f"messages[{i}]")
            asked = [c.id for c in _calls(m)]
            continue
        results = [p.tool_call_id for p in m.content if isinstance(p, ToolResult)]
        stray = [r for r in results if r not in asked]
        if stray:
            raise invalid(f"Tool results {stray} answer no tool call of the message before them.",
                          f"messages[{i}]")
        missing = [a for a in asked if a not in results]
        if missing:
            raise invalid(f"Tool calls {missing} are not answered by the turn after them; every tool "
                          "call needs its result in the next message.", f"messages[{i}]")
        asked = []
    if asked:
        raise invalid(f"Tool calls {asked} are never answered; send their results before asking "
                      "for the next turn.", "messages")


def _mistral(turns: list[Message]) -> list[Message]:
    out: list[Message] = []
    for m in turns:
        parts = [_mistral_ids(p) for p in m.content]
        results: list[Part] = [p for p in parts if isinstance(p, ToolResult)]
        rest: list[Part] = [p for p in parts if not isinstance(p, ToolResult)]
        if m.role == "user" and results and rest:
            out += [Message(role="user", content=results),
                    Message(role="assistant", content=[Text(MISTRAL_BRIDGE)]),
                    Message(role="user", content=rest)]
        else:
            out.append(Message(role=m.role, content=parts))
    return out


def _mistral_ids(part: Part) -> Part:
    if isinstance(part, ToolCall) and tool_call_id(part.id) != part.id:  # valid ids map to themselves
        return msgspec.structs.replace(part, id=tool_call_id(part.id))
    if isinstance(part, ToolResult) and tool_call_id(part.tool_call_id) != part.tool_call_id:
        return msgspec.structs.replace(part, tool_call_id=tool_call_id(part.tool_call_id))
    return part

