"""Answer and format checkers of the validation suites (spec §13.4): response text in, pass/fail out.

A validation item stores `checker` (a name below) and `checker_args` (JSON); `check()` replays it on any
model response, so the suites stay usable long after the manifest was built.

- `gsm8k`: the final number (after `####`, else the last number in the text) equals the reference.
- `math_boxed`: the last `\\boxed{…}` equals the reference after Hendrycks-MATH normalization
  (or both parse as the same number).
- `ifeval`: every IFEval instruction holds (google-research `instruction_following_eval` semantics,
  strict variant); `language:response_language` needs a language identifier and is not supported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from fractions import Fraction

# ----------------------------------------------------------------------------------------- reasoning

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _as_number(text: str) -> Fraction | None:
    cleaned = text.replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        match = re.fullmatch(r"\\?d?frac\{(-?\d+)\}\{(-?\d+)\}", cleaned.replace("\\dfrac", "\\frac"))
        if match and int(match.group(2)) != 0:
            return Fraction(int(match.group(1)), int(match.group(2)))
        return None


def gsm8k_reference(solution: str) -> str | None:
    """The number after the last `####` of a GSM8K answer."""
    if "####" not in solution:
        return None
    answer = solution.rsplit("####", 1)[1].strip().replace(",", "")
    return answer if _as_number(answer) is not None else None


def gsm8k_final_number(response: str) -> str | None:
    """What a GSM8K grader reads from a response: the `####` answer, else the last number."""
    marked = gsm8k_reference(response)
    if marked is not None:
        return marked
    numbers = _NUMBER.findall(response)
    return numbers[-1].replace(",", "").replace("$", "").rstrip(".") if numbers else None


def check_gsm8k(reference: str, response: str) -> bool:
    found = gsm8k_final_number(response)
    return found is not None and _as_number(found) == _as_number(reference)


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{…}` (or `\\fbox{…}`), braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        rest = text[start:].split("$", 1)[0].split(" ", 1)
        return rest[1].strip() if len(rest) == 2 else None
    depth = 0
    for i in range(brace, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[brace + 1:i]
    return None


def normalize_math_answer(answer: str) -> str:
    """Hendrycks MATH `strip_string`: drop spacing, units, `\\left`/`\\right`, unify fractions."""
    s = answer.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "").replace("$", "")
    s = s.split("\\text{ ")[0]  # trailing units: "5 \\text{ cm}"
    s = s.replace("\\%", "").replace("%", "").replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    if len(s.split("=")) == 2 and len(s.split("=")[0]) <= 2:
        s = s.split("=")[1]
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\{([^{}]+)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\d)", r"\\sqrt{\1}", s)
    s = s.replace(" ", "")
    if s == "0.5":
        s = "\\frac{1}{2}"
    if re.fullmatch(r"-?\d+/\d+", s):
        a, b = s.split("/")
        s = f"\\frac{{{a}}}{{{b}}}"
    return s.rstrip(".")


def math_reference(solution: str) -> str | None:
    return last_boxed(solution)


def check_math_boxed(reference: str, response: str) -> bool:
    found = last_boxed(response)
    if found is None:
        return False
    left, right = normalize_math_answer(found), normalize_math_answer(reference)
    if left == right:
        return True
    a, b = _as_number(left), _as_number(right)
    return a is not None and a == b


# ------------------------------------------------------------------------------------------- IFEval

def _compare(count: int, relation: str, threshold: int) -> bool:
    if relation == "less than":
        return count < threshold
    if relation == "at least":
        return count >= threshold
    raise ValueError(f"unknown IFEval relation {relation!r}")


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def _paragraphs_by_stars(text: str) -> list[str] | None:
    parts = re.split(r"\s?\*\*\*\s?", text)
    for i, part in enumerate(parts):
        if not part.strip() and i not in (0, len(parts) - 1):
            return None
    return [p for p in parts if p.strip()]


def _json_ok(text: str) -> bool:
    value = text.strip().removeprefix("```json").removeprefix("```Json").removeprefix("```JSON")
    value = value.removeprefix("```").removesuffix("```").strip()
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def _two_responses(text: str) -> bool:
    parts = text.split("******")
    valid = []
    for i, part in enumerate(parts):
        if not part.strip():
            if i not in (0, len(parts) - 1):
                return False
        else:
            valid.append(part.strip())
    return len(valid) == 2 and valid[0] != valid[1]


def _nth_paragraph(text: str, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
    parts = re.split(r"\n\n", text)
    paragraphs = [p for p in parts if p.strip()]
    if len(paragraphs) != num_paragraphs or nth_paragraph > len(paragraphs):
        return False
    words = paragraphs[nth_paragraph - 1].strip().split()
    if not words:
        return False
    word = words[0].lstrip("'\"").rstrip(".,!?;:'\"").lower()
    return word == first_word.lower()


def _postscript(text: str, postscript_marker: str) -> bool:
    marker = postscript_marker.strip().lower()
    if marker == "p.p.s":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "p.s.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker) + r".*$"
    return bool(re.findall(pattern, text.lower(), flags=re.MULTILINE))


def _bullets(text: str) -> int:
    return len(re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)) + len(
        re.findall(r"^\s*-.*$", text, flags=re.MULTILINE))


IFEVAL: dict[str, Callable[..., bool]] = {
    "punctuation:no_comma": lambda r: "," not in r,
    "length_constraints:number_words": lambda r, num_words, relation: _compare(len(_words(r)), relation, num_words),
    "length_constraints:number_sentences": lambda r, num_sentences, relation: _compare(
        len(_sentences(r)), relation, num_sentences),
    "length_constraints:number_paragraphs": lambda r, num_paragraphs: (
        (p := _paragraphs_by_stars(r)) is not None and len(p) == num_paragraphs),
    "length_constraints:nth_paragraph_first_word": _nth_paragraph,
    "keywords:forbidden_words": lambda r, forbidden_words: not any(
        re.search(r"\b" + re.escape(w) + r"\b", r, flags=re.I) for w in forbidden_words),
    "keywords:existence": lambda r, keywords: all(re.search(re.escape(k), r, flags=re.I) for k in keywords),
    "keywords:frequency": lambda r, keyword, frequency, relation: _compare(
        len(re.findall(re.escape(keyword), r, flags=re.I)), relation, frequency),
    "keywords:letter_frequency": lambda r, letter, let_frequency, let_relation: _compare(
        r.lower().count(letter.lower()), let_relation, let_frequency),
    "detectable_format:number_highlighted_sections": lambda r, num_highlights: sum(
        1 for h in re.findall(r"\*[^\n\*]*\*", r) + re.findall(r"\*\*[^\n\*]*\*\*", r)
        if h.strip("*").strip()) >= num_highlights,
    "detectable_format:number_bullet_lists": lambda r, num_bullets: _bullets(r) == num_bullets,
    "detectable_format:title": lambda r: any(t.strip("<>").strip() for t in re.findall(r"<<[^\n]+>>", r)),
    "detectable_format:json_format": _json_ok,
    "detectable_format:multiple_sections": lambda r, section_spliter, num_sections: len(
        re.split(r"\s?" + re.escape(section_spliter) + r"\s?\d+\s?", r)) - 1 >= num_sections,
    "detectable_format:constrained_response": lambda r: any(
        option in r for option in ("My answer is yes.", "My answer is no.", "My answer is maybe.")),
    "detectable_content:number_placeholders": lambda r, num_placeholders: len(
        re.findall(r"\[.*?\]", r)) >= num_placeholders,
    "detectable_content:postscript": _postscript,
    "change_case:english_lowercase": lambda r: r == r.lower(),
    "change_case:english_capital": lambda r: r == r.upper(),
    "change_case:capital_word_frequency": lambda r, capital_frequency, capital_relation: _compare(
        sum(1 for w in _words(r) if w.isupper()), capital_relation, capital_frequency),
    "combination:repeat_prompt": lambda r, prompt_to_repeat: r.strip().lower().startswith(
        prompt_to_repeat.strip().lower()),
    "combination:two_responses": _two_responses,
    "startend:quotation": lambda r: len(r.strip()) > 1 and r.strip()[0] == '"' and r.strip()[-1] == '"',
    "startend:end_checker": lambda r, end_phrase: r.strip().strip('"').lower().endswith(end_phrase.strip().lower()),
}


def ifeval_instructions(instruction_ids: list[str], kwargs: list[dict]) -> list[dict] | None:
    """The instructions of an IFEval row as `[{id, kwargs}]`, or None if one of them is unsupported."""
    if any(i not in IFEVAL for i in instruction_ids) or len(instruction_ids) != len(kwargs):
        return None
    return [{"id": i, "kwargs": {k: v for k, v in (kw or {}).items() if v is not None}}
            for i, kw in zip(instruction_ids, kwargs)]


def check_ifeval(instructions: list[dict], response: str) -> bool:
    """Strict IFEval: an empty response follows no instruction."""
    return bool(response.strip()) and all(IFEVAL[item["id"]](response, **item["kwargs"]) for item in instructions)


# ------------------------------------------------------------------------------------------- dispatch

SUITE_OF_CHECKER = {"gsm8k": "reasoning", "math_boxed": "reasoning", "ifeval": "format"}


def check(checker: str, reference_answer: str | None, checker_args: str | None, response: str) -> bool:
    """Replay a validation item's checker on a response."""
    if checker == "gsm8k":
        return check_gsm8k(reference_answer or "", response)
    if checker == "math_boxed":
        return check_math_boxed(reference_answer or "", response)
    if checker == "ifeval":
        return check_ifeval(json.loads(checker_args or "[]"), response)
    raise ValueError(f"unknown checker {checker!r}; known: {sorted(SUITE_OF_CHECKER)}")


def reference_of(checker: str, row: dict, spec: dict) -> tuple[str | None, str | None]:
    """(reference_answer, checker_args JSON) of a raw source row, per the registry's `reference:` spec.

    (None, None) when the row carries no usable reference (such a row is left out of the suite).
    """
    if checker == "gsm8k":
        return gsm8k_reference(str(row.get(spec.get("field", "answer")) or "")), None
    if checker == "math_boxed":
        return math_reference(str(row.get(spec.get("field", "solution")) or "")), None
    if checker == "ifeval":
        instructions = ifeval_instructions(row.get(spec.get("instructions_field", "instruction_id_list")) or [],
                                           row.get(spec.get("kwargs_field", "kwargs")) or [])
        return (None, json.dumps(instructions)) if instructions else (None, None)
    raise ValueError(f"unknown checker {checker!r}; known: {sorted(SUITE_OF_CHECKER)}")
