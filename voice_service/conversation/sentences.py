"""Cuts a streamed LLM reply into sentences, so each one goes to TTS as soon as it is complete.

A sentence ends at `.`, `!`, `?` (or `…`, `;`, a newline) followed by whitespace: the whitespace is what
proves the sentence is over (tokens stream with their leading space, so the proof is the next token). The
first sentence of a reply does not wait for that proof when its stop is unambiguous (`!`, `?`, or `.` after
a plain word that is no abbreviation): the caller is waiting for it, and the next token can be tens of
milliseconds away. Later sentences queue behind audio that is still playing, so they wait for the proof.
Abbreviations ("Dr.", "e.g."), initials ("J. Smith") and decimals ("3.5") do not end a sentence. A first
sentence is cut early at a comma once it is long, so the first audio starts sooner; later sentences are
cut at a comma only when they grow past `max_chars` (a run-on reply still streams).
"""

from __future__ import annotations

import re

_TERMINATORS = frozenset(".!?…;\n")
_CLOSERS = frozenset("\"')]”’")
_ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "inc", "ltd", "co",
        "corp", "mt", "approx", "dept", "est", "apt", "ave", "blvd", "jan", "feb", "mar", "apr", "jun",
        "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "wed", "thu", "fri", "sat", "sun",
    }
)  # fmt: skip
_WORD_BEFORE = re.compile(r"([\w.]+)$")


class SentenceSplitter:
    """Feed text deltas with `push`; it returns the sentences completed so far. `flush` returns the rest."""

    def __init__(self, *, first_min_chars: int = 40, max_chars: int = 220) -> None:
        self._buffer = ""
        self._scan_from = 0
        self._emitted = 0
        self._first_min_chars = first_min_chars
        self._max_chars = max_chars

    def push(self, delta: str) -> list[str]:
        self._buffer += delta
        sentences: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            sentence = self._buffer[:cut].strip()
            self._buffer = self._buffer[cut:].lstrip()
            self._scan_from = 0
            if sentence:
                sentences.append(sentence)
                self._emitted += 1
        return sentences

    def flush(self) -> str | None:
        rest = self._buffer.strip()
        self._buffer = ""
        self._scan_from = 0
        if rest:
            self._emitted += 1
            return rest
        return None

    def _find_cut(self) -> int | None:
        text = self._buffer
        n = len(text)
        i = self._scan_from
        while i < n:
            ch = text[i]
            if ch == "\n":
                return i + 1
            if ch in _TERMINATORS:
                j = i + 1
                while j < n and (text[j] in _CLOSERS or text[j] in ".!?"):
                    j += 1
                if j >= n:
                    if self._emitted == 0 and self._eager_stop(text, i):
                        return j
                    break  # the terminator run may continue in the next delta
                if text[j].isspace() and self._ends_sentence(text, i):
                    return j
            i += 1
        self._scan_from = max(0, min(i, n - 1))
        limit = self._first_min_chars if self._emitted == 0 else self._max_chars
        if n > limit:
            cut = self._comma_cut(text, limit)
            if cut is not None:
                return cut
        return None

    def _ends_sentence(self, text: str, i: int) -> bool:
        ch = text[i]
        if ch != ".":
            return True
        match = _WORD_BEFORE.search(text, 0, i)
        if match is None:
            return True
        word = match.group(1)
        if word[-1:].isdigit() and i + 1 < len(text) and text[i + 1].isdigit():
            return False  # 3.5
        lowered = word.lower()
        if lowered in _ABBREVIATIONS:
            return False
        return not (len(word) == 1 and word.isalpha() and word.isupper())  # initials: "J. Smith"

    def _eager_stop(self, text: str, i: int) -> bool:
        """A stop at the end of the buffer that ends the sentence whatever comes next."""
        ch = text[i]
        if ch in "!?":
            return True
        if ch != ".":
            return False
        match = _WORD_BEFORE.search(text, 0, i)
        if match is None:
            return False
        word = match.group(1)
        # "3." may become "3.5", "U.S" / "e.g" may continue, "Dr." is an abbreviation, "J." an initial.
        return len(word) >= 2 and word.isalpha() and word.lower() not in _ABBREVIATIONS

    def _comma_cut(self, text: str, limit: int) -> int | None:
        # Cut after the last ", " / ": " / " - " past a third of the limit (too early a cut sounds choppy).
        best = None
        for sep in (", ", ": ", " - ", " — "):
            pos = text.rfind(sep, limit // 3)
            if pos != -1 and (best is None or pos > best):
                best = pos + len(sep.rstrip())
        return best


def split_text(text: str) -> list[str]:
    """A whole text (starter prompt, re-prompt, goodbye) as sentences."""
    splitter = SentenceSplitter(first_min_chars=10_000, max_chars=10_000)
    sentences = splitter.push(text + " ")
    rest = splitter.flush()
    if rest:
        sentences.append(rest)
    return sentences
