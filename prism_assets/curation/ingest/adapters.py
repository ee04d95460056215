"""Adapters: one upstream row (a parsed JSON value) to canonical chat messages, or a rejection.

Each adapter knows one upstream layout (see shared/research/hf_sources.md for the real schemas).
They return the conversation *before* the assistant's next turn: optional source system text, then
user/assistant history ending on a user turn. The run's fixed system prompt is added later.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PLACEHOLDER_TEXTS = {"-", "—", "n/a", "<placeholder>"}


class Rejected(Exception):
    """A row that cannot become a prompt; `code` is the quarantine category, `reason` says why."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class Adapted:
    messages: list[dict]  # [{"role", "content", "channel"}], roles developer|user|assistant
    example_id: str | None = None
    licence: str | None = None


def get_path(row: Any, path: str, default: Any = None) -> Any:
    """Look up a dotted path (`info.problem_id`, `messages.0.content`) in nested dicts and lists."""
    value = row
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part, default)
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return default
    return value


def adapt(adapter: str, row: Any, options: dict[str, Any]) -> Adapted:
    if adapter != "text" and not isinstance(row, dict):
        hint = "; for one JSON string per line register the source with adapter: text" if isinstance(row, str) else ""
        raise Rejected("invalid JSON",
                       f"row is a JSON {_json_type(row)}, the {adapter} adapter expects an object{hint}")
    messages = ADAPTERS[adapter](row, options)
    validate_messages(messages, row if isinstance(row, dict) else {}, options)
    id_field = options.get("id_field")
    example_id = get_path(row, id_field) if id_field else None
    licence_field = options.get("licence_field")
    licence = get_path(row, licence_field) if licence_field else None
    return Adapted(
        messages=messages,
        example_id=None if example_id is None else str(example_id),
        licence=None if licence in (None, "") else str(licence),
    )


def validate_messages(messages: list[dict], row: dict, options: dict[str, Any]) -> None:
    """Reject what a teacher cannot be prompted with; the checks run in order of how users fix them."""
    for number, message in enumerate(messages, 1):
        content = message.get("content")
        if content is None:
            raise Rejected("non-text content", f"{message.get('role')} message {number} has no text (null or missing "
                           "content)")
        if not isinstance(content, str):
            raise Rejected("non-text content", f"{message.get('role')} message {number} content is a JSON "
                           f"{_json_type(content)}, not text")
        bad = _CONTROL.search(content)
        if bad:
            raise Rejected("control characters", f"{message['role']} message {number} holds the control character "
                           f"U+{ord(bad.group()):04X} at character {bad.start()}: remove control characters "
                           "(other than tab and newline) from the source")
        bad = _SURROGATE.search(content)
        if bad:
            raise Rejected("undecodable text", f"{message['role']} message {number} holds a lone UTF-16 surrogate "
                           f"U+{ord(bad.group()):04X} at character {bad.start()}, which UTF-8 cannot store")
    turns = [m for m in messages if m["role"] in ("user", "assistant")]
    if not turns:
        raise Rejected("empty prompt", "no user turn found")
    last_user = turns[-1]["content"].strip()
    if last_user.lower() in PLACEHOLDER_TEXTS:
        fields = options.get("rebuild_fields", ["dataset", "split", "index"])
        found = {f: get_path(row, f) for f in fields if get_path(row, f) is not None}
        origin = (f"rebuild it from {', '.join(f'{k}={v}' for k, v in found.items())}" if found
                  else f"the row has none of the fields {fields} that would say where to rebuild it from")
        raise Rejected("placeholder prompt", f"the prompt is the placeholder {last_user!r}: {origin}")
    for number, message in enumerate(messages, 1):
        if message["role"] in ("user", "assistant") and not _INVISIBLE.sub("", message["content"]).strip():
            what = "empty or whitespace-only" if not message["content"].strip() else \
                "only invisible characters (zero-width or format marks)"
            raise Rejected("empty prompt", f"{message['role']} message {number} is {what}")
    roles = [m["role"] for m in messages]
    leading = 0
    while leading < len(roles) and roles[leading] == "developer":
        leading += 1
    body = roles[leading:]
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(body))]
    if body != expected or body[-1] != "user":
        raise Rejected("invalid role order", f"roles {roles} must be [developer] user (assistant user)*")


# C0 controls other than tab, newline and carriage return, DEL and the C1 block: no prompt needs them.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Zero-width and bidirectional format marks (Unicode Cf) that render as nothing.
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _user(text: Any) -> dict:
    return {"role": "user", "content": text, "channel": None}


def _turn(role: str, text: Any) -> dict:
    if role == "assistant":
        return {"role": "assistant", "content": text, "channel": "final"}
    return {"role": role, "content": text, "channel": None}


def _required(row: dict, path: str) -> Any:
    value = get_path(row, path)
    if value is None:
        raise Rejected("empty prompt", f"field {path!r} is missing or null")
    return value


def flat(row: dict, options: dict[str, Any]) -> list[dict]:
    """A prompt in one column, optionally wrapped in a template and followed by extra columns."""
    text = _required(row, options["prompt_field"])
    if not isinstance(text, str):
        return [_user(text)]
    template = options.get("template")
    if template:
        fields = {k: v for k, v in row.items() if isinstance(v, str)}
        text = template.format_map({**fields, "prompt": text})
    for extra in options.get("append_fields", []):
        value = get_path(row, extra)
        if isinstance(value, str) and value.strip():
            text = f"{text}\n\n{value}"
    messages = [_user(text)]
    system_field = options.get("system_field")
    if system_field and isinstance(get_path(row, system_field), str) and get_path(row, system_field).strip():
        messages.insert(0, _turn("developer", get_path(row, system_field)))
    return messages


def synth(row: dict, options: dict[str, Any]) -> list[dict]:
    """PleIAs/SYNTH: `query`, with the seed passage as context for retrieval-style exercises."""
    query = _required(row, "query")
    exercise = str(row.get("exercise") or "")
    context = row.get("query_seed_text")
    if re.search(options.get("context_exercises", "rag|retriev|memorization"), exercise, re.I) and context:
        return [_user(f"Context: {context}\n\n{query}")]
    return [_user(query)]


_ROLE_ALIASES = {"human": "user", "user": "user", "prompter": "user", "gpt": "assistant",
                 "assistant": "assistant", "model": "assistant", "chatgpt": "assistant", "bing": "assistant",
                 "system": "developer", "developer": "developer"}


def _chat(turns: list[dict], role_key: str, content_key: str, row: dict, options: dict[str, Any]) -> list[dict]:
    """Shared path for role/content and from/value chats: keep history up to the last user turn."""
    if not isinstance(turns, list):
        raise Rejected("non-text content", f"conversation is a {type(turns).__name__}, not a list of turns")
    messages, skipped = [], []
    for number, turn in enumerate(turns, 1):
        if not isinstance(turn, dict):
            raise Rejected("invalid role order", f"turn {number} is a JSON {_json_type(turn)}, not an object "
                           f"with {role_key!r} and {content_key!r}")
        role = _ROLE_ALIASES.get(str(turn.get(role_key, "")).lower())
        if role is None:
            if options.get("skip_unknown_roles", True):  # tool / function turns carry no prompt text
                skipped.append(turn.get(role_key))
                continue
            raise Rejected("invalid role order", f"turn {number} has the unknown role {turn.get(role_key)!r}; known: "
                           f"{sorted(_ROLE_ALIASES)}")
        messages.append(_turn(role, turn.get(content_key)))
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        extra = (f"; turns with unknown roles {sorted({str(r) for r in skipped})} were skipped (skip_unknown_roles), "
                 f"known roles: {sorted(_ROLE_ALIASES)}") if skipped else ""
        raise Rejected("empty prompt", f"no user turn found in {role_key!r}/{content_key!r} turns{extra}")
    if options.get("keep_history", True):
        messages = messages[: users[-1] + 1]
    else:  # the first user turn, with any system text before it
        messages = [m for m in messages[: users[0]] if m["role"] == "developer"] + [messages[users[0]]]
    system_field = options.get("system_field")
    system_text = get_path(row, system_field) if system_field else None
    if isinstance(system_text, str) and system_text.strip():
        messages.insert(0, _turn("developer", system_text))
    return messages


def chat_messages(row: dict, options: dict[str, Any]) -> list[dict]:
    """`messages` (or `input`) lists of {role, content}; tool turns are skipped."""
    field = options.get("messages_field", "messages")
    turns = _required(row, field)
    if isinstance(turns, str):
        turns = _parse_llama3_template(turns)
    if options.get("first_user_only"):
        options = {**options, "keep_history": False}
    return _chat(turns, "role", "content", row, options)


def conversations(row: dict, options: dict[str, Any]) -> list[dict]:
    """ShareGPT-style `conversations` lists of {from, value} (human/gpt or user/assistant)."""
    turns = _required(row, options.get("conversations_field", "conversations"))
    if options.get("first_user_only"):
        options = {**options, "keep_history": False}
    return _chat(turns, "from", "value", row, options)


_LLAMA3_TURN = re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n(.*?)(?:<\|eot_id\|>|$)", re.S)


def _parse_llama3_template(text: str) -> list[dict]:
    """Llama-Nemotron v1.0 stored `input` as a Llama-3 chat-template string; any other string is refused (it
    would otherwise become a prompt silently, whatever it holds)."""
    turns = [{"role": role, "content": content} for role, content in _LLAMA3_TURN.findall(text)]
    if not turns:
        raise Rejected("invalid role order", "the messages field is a string that is not a Llama-3 chat-template "
                       "transcript (<|start_header_id|>role<|end_header_id|>…): give a list of {role, content} turns, "
                       "or register the source with the flat adapter and prompt_field")
    return turns


_HH_MARKER = re.compile(r"\n\n(Human|Assistant): ?")


def hh_rlhf(row: dict, options: dict[str, Any]) -> list[dict]:
    """Anthropic hh-rlhf transcripts: the prompt is everything before the final Assistant response."""
    transcript = _required(row, options.get("transcript_field", "chosen"))
    if not isinstance(transcript, str):
        return [_user(transcript)]
    end = transcript.rfind("\n\nAssistant:")
    prompt = transcript[:end] if end >= 0 else transcript
    parts = _HH_MARKER.split(prompt)
    messages = []
    for speaker, text in zip(parts[1::2], parts[2::2]):
        messages.append(_turn("user" if speaker == "Human" else "assistant", text.strip()))
    if not messages:
        raise Rejected("empty prompt", "no '\\n\\nHuman:' turn in transcript")
    return messages


def oasst_tree(row: dict, options: dict[str, Any]) -> list[dict]:
    """OpenAssistant trees: follow the rank-0 (best) reply from the root; prompt ends on the last prompter."""
    node = _required(row, "prompt")
    path = []
    while isinstance(node, dict):
        if node.get("deleted") or node.get("review_result") is False:
            break
        path.append(_turn(_ROLE_ALIASES.get(node.get("role"), "user"), node.get("text")))
        replies = [r for r in node.get("replies") or [] if not r.get("deleted")]
        ranked = [r for r in replies if r.get("rank") == 0]
        node = ranked[0] if ranked else (replies[0] if len(replies) == 1 else None)
    max_turns = options.get("max_history_turns")
    last_user = max((i for i, m in enumerate(path) if m["role"] == "user"), default=None)
    if last_user is None:
        raise Rejected("empty prompt", "tree has no prompter message")
    path = path[: last_user + 1]
    if max_turns and len(path) > max_turns:
        path = path[-max_turns:]
        path = path[1:] if path[0]["role"] == "assistant" else path
    return path


def alpaca_seed(row: dict, options: dict[str, Any]) -> list[dict]:
    """Self-Instruct seed tasks: the instruction plus the first instance's input, when there is one."""
    instruction = _required(row, "instruction")
    instances = row.get("instances") or []
    first_input = instances[0].get("input") if instances and isinstance(instances[0], dict) else ""
    if isinstance(instruction, str) and isinstance(first_input, str) and first_input.strip():
        return [_user(f"{instruction}\n\n{first_input}")]
    return [_user(instruction)]


_ALPACA_SECTION = re.compile(r"### (Instruction|Input|Response):\s*", re.S)


def alpaca_template(row: dict, options: dict[str, Any]) -> list[dict]:
    """Rows already wrapped in the Alpaca template ('### Instruction: … ### Response:'): unwrap them."""
    text = _required(row, options.get("prompt_field", "prompt"))
    if not isinstance(text, str):
        return [_user(text)]
    parts = _ALPACA_SECTION.split(text)
    sections = dict(zip(parts[1::2], (p.strip() for p in parts[2::2])))
    instruction = sections.get("Instruction", text.strip())
    extra = sections.get("Input", "")
    return [_user(f"{instruction}\n\n{extra}" if extra else instruction)]


def turns(row: dict, options: dict[str, Any]) -> list[dict]:
    """MT-Bench style `turns` (user turns only, no answers): the first turn is the prompt."""
    values = _required(row, options.get("turns_field", "turns"))
    if not isinstance(values, list) or not values:
        raise Rejected("empty prompt", "`turns` is empty")
    return [_user(values[0])]


def text(row: Any, options: dict[str, Any]) -> list[dict]:
    """Rows that are bare JSON strings ("Write a function…" one per line): the string is the prompt."""
    if not isinstance(row, str):
        raise Rejected("invalid JSON", f"the text adapter reads one JSON string per row, got a JSON "
                       f"{_json_type(row)}; for objects use the flat adapter with prompt_field")
    return [_user(row)]


ADAPTERS: dict[str, Callable[[Any, dict[str, Any]], list[dict]]] = {
    "flat": flat,
    "text": text,
    "synth": synth,
    "messages": chat_messages,
    "conversations": conversations,
    "hh_rlhf": hh_rlhf,
    "oasst_tree": oasst_tree,
    "alpaca_seed": alpaca_seed,
    "alpaca_template": alpaca_template,
    "turns": turns,
}
