"""Whisper's tokenizer: the layout of Whisper's special tokens (languages, tasks, timestamps,
suppressed symbols) on top of a byte-level ``TextTokenizer``."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Sequence


from ..errors import expect
from .bpe import _check_ids, _preview, read_tiktoken_file
from .text import TextTokenizer

# Whisper's language tokens, in id order: <|en|> is sot + 1. Models have the first 99 (large-v3: 100).
WHISPER_LANGUAGES = (
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it", "id", "hi",
    "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur", "hr", "bg", "lt", "la",
    "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn", "et", "mk", "br", "eu", "is", "hy",
    "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si", "km", "sn", "yo", "so", "af", "oc", "ka", "be",
    "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl",
    "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", "yue",
)
TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>
TIME_PRECISION = 0.02  # seconds per timestamp step

# Text Whisper should not invent from audio: speaker tags, bracketed notes, music symbols. A symbol
# is suppressed where it is one token (alone or after a space); the music symbols always by their
# first token (their 3-byte UTF-8 forms share the first two bytes with other U+2640..U+267F symbols).
_NON_SPEECH_SYMBOLS = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』') + \
    "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
_MUSIC_SYMBOLS = list("♩♪♫♬♭♮♯")


class WhisperTokenizer:
    """Whisper's tokenizer: a byte-level BPE (GPT-2's for English-only models, a multilingual one
    otherwise) followed by special tokens in a fixed order: <|endoftext|>, <|startoftranscript|>,
    one token per language, <|translate|>, <|transcribe|>, <|startoflm|>, <|startofprev|>,
    <|nospeech|> (<|nocaptions|> in older files), <|notimestamps|>, then 1501 timestamps
    <|0.00|> … <|30.00|> (ids after <|notimestamps|> when the file does not list them).
    """

    def __init__(self, text: TextTokenizer, *, multilingual: bool | None = None):
        expect(isinstance(text, TextTokenizer), "text", "a TextTokenizer", type(text).__name__)
        self.text = text
        special = text.special_tokens
        names = {"eot": "<|endoftext|>", "sot": "<|startoftranscript|>", "translate": "<|translate|>",
                 "transcribe": "<|transcribe|>", "sot_lm": "<|startoflm|>", "sot_prev": "<|startofprev|>",
                 "no_timestamps": "<|notimestamps|>"}
        no_speech = "<|nospeech|>" if "<|nospeech|>" in special else "<|nocaptions|>"
        missing = [s for s in [*names.values(), no_speech] if s not in special]
        expect(not missing, "tokenizer", "Whisper's special tokens", f"a tokenizer without {', '.join(missing)}")
        for attr, name in names.items():
            setattr(self, attr, special[name])
        self.no_speech: int = special[no_speech]
        self.timestamp_begin: int = special.get("<|0.00|>", self.no_timestamps + 1)
        self.vocab_size: int = max(text.vocab_size, self.timestamp_begin + TIMESTAMPS)
        # Language tokens sit between <|startoftranscript|> and <|translate|>, in Whisper's order.
        # Their codes come from that order: older files name some by retired codes (<|iw|> for
        # Hebrew), which are accepted too.
        by_id = {i: s for s, i in special.items()}
        count = self.translate - self.sot - 1
        named = [by_id[i][2:-2] for i in range(self.sot + 1, self.translate) if i in by_id]
        expect(len(named) == count and count <= len(WHISPER_LANGUAGES), "tokenizer",
               f"at most {len(WHISPER_LANGUAGES)} language tokens at consecutive ids between "
               "<|startoftranscript|> and <|translate|>", f"{len(named)} tokens for {count} ids")
        self.languages: tuple[str, ...] = WHISPER_LANGUAGES[:count]
        self._language_ids = {code.lower(): self.sot + 1 + k
                              for codes in (named, self.languages) for k, code in enumerate(codes)}
        expect(multilingual is None or isinstance(multilingual, bool), "multilingual", "None, True or False",
               repr(multilingual))
        # OpenAI's rule: English-only models have 51864 tokens, multilingual ones 51865 or 51866.
        self.multilingual: bool = self.vocab_size >= 51865 if multilingual is None else multilingual
        self._special_ids = frozenset(special.values())

    @classmethod
    def from_file(cls, path: str | Path, *, multilingual: bool | None = None) -> "WhisperTokenizer":
        """From a Whisper ``tokenizer.json`` (Hugging Face / CTranslate2 model folders ship one)."""
        return cls(TextTokenizer.from_file(path), multilingual=multilingual)

    @classmethod
    def from_tiktoken(cls, path: str | Path, *, num_languages: int = 99,
                      multilingual: bool | None = None) -> "WhisperTokenizer":
        """From one of openai-whisper's ``.tiktoken`` rank files (``gpt2.tiktoken`` for English-only
        models, ``multilingual.tiktoken``), with the special tokens and timestamps laid out after
        the ranks as OpenAI's checkpoints expect; ``num_languages`` is 99, or 100 for large-v3."""
        expect(isinstance(num_languages, int) and 1 <= num_languages <= len(WHISPER_LANGUAGES), "num_languages",
               f"an int in [1, {len(WHISPER_LANGUAGES)}]", repr(num_languages))
        ranks = read_tiktoken_file(path)
        names = ["<|endoftext|>", "<|startoftranscript|>",
                 *(f"<|{code}|>" for code in WHISPER_LANGUAGES[:num_languages]),
                 "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
                 "<|notimestamps|>", *(f"<|{i * TIME_PRECISION:.2f}|>" for i in range(TIMESTAMPS))]
        first = len(ranks)
        return cls(TextTokenizer.from_tiktoken(ranks, {s: first + k for k, s in enumerate(names)}, "gpt2"),
                   multilingual=multilingual)

    def save(self, folder: str | Path) -> Path:
        return self.text.save(folder)

    # ------------------------------------------------------------------------------- specials
    def language_token(self, language: str) -> int:
        """The id of ``<|{language}|>`` for a language code such as ``"en"``."""
        expect(isinstance(language, str) and language.lower() in self._language_ids, "language",
               f"a language code of this tokenizer ({_preview(self.languages, 10)})", repr(language))
        return self._language_ids[language.lower()]

    @property
    def language_tokens(self) -> tuple[int, ...]:
        return tuple(range(self.sot + 1, self.sot + 1 + len(self.languages)))

    def sot_sequence(self, language: str | None = None, task: str | None = "transcribe",
                     timestamps: bool = True) -> tuple[int, ...]:
        """The decoder prompt: <|startoftranscript|>, then for multilingual models the language
        (when given; None leaves it for the model to predict) and the task, then <|notimestamps|>
        unless ``timestamps``. English-only models take no language or task tokens."""
        expect(task in (None, "transcribe", "translate"), "task", "None, 'transcribe' or 'translate'", repr(task))
        expect(isinstance(timestamps, bool), "timestamps", "True or False", repr(timestamps))
        sequence = [self.sot]
        if self.multilingual:
            if language is not None:
                sequence.append(self.language_token(language))
            if task is not None:
                sequence.append(self.transcribe if task == "transcribe" else self.translate)
        else:
            expect(language is None or language == "en", "language", "None or 'en' for an English-only model",
                   repr(language))
            expect(task != "translate", "task", "'transcribe' for an English-only model", repr(task))
        if not timestamps:
            sequence.append(self.no_timestamps)
        return tuple(sequence)

    def timestamp_token(self, seconds: float) -> int:
        """The id of the timestamp nearest ``seconds`` (0 to 30)."""
        expect(isinstance(seconds, (int, float)) and 0 <= seconds <= 30, "seconds", "a time in [0, 30]",
               repr(seconds))
        return self.timestamp_begin + round(seconds / TIME_PRECISION)

    @cached_property
    def non_speech_tokens(self) -> tuple[int, ...]:
        """Ids to suppress so that the model does not write speaker tags or sound annotations
        (``♪♪♪``, ``( SPEAKING FOREIGN LANGUAGE )``, ``[DAVID]``), keeping ordinary punctuation and
        hyphens / apostrophes inside words."""
        result = {self.text.encode(" -")[0], self.text.encode(" '")[0]}
        for symbol in _NON_SPEECH_SYMBOLS + _MUSIC_SYMBOLS:
            for ids in (self.text.encode(symbol), self.text.encode(" " + symbol)):
                if len(ids) == 1 or symbol in _MUSIC_SYMBOLS:
                    result.add(ids[0])
        return tuple(sorted(result))

    @cached_property
    def suppress_tokens(self) -> tuple[int, ...]:
        """Whisper's default suppression (``suppress_tokens="-1"``): the non-speech tokens and the
        special tokens a transcript never contains."""
        return tuple(sorted({*self.non_speech_tokens, self.transcribe, self.translate, self.sot,
                             self.sot_prev, self.sot_lm, self.no_speech}))

    @cached_property
    def suppress_at_begin(self) -> tuple[int, ...]:
        """Ids suppressed as the first sampled token: a blank and <|endoftext|>."""
        return (*self.text.encode(" "), self.eot)

    # ------------------------------------------------------------------------- text and ids
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special tokens' texts encode as ordinary text."""
        return self.text.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` without special and timestamp tokens."""
        ids = self._check_ids(ids)
        return self.text.decode([i for i in ids if i < self.timestamp_begin and i not in self._special_ids])

    def decode_with_timestamps(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` with special tokens' texts and timestamps written ``<|1.08|>``."""
        parts, run = [], []
        for i in self._check_ids(ids):
            if i >= self.timestamp_begin:
                parts.append(self.text.decode(run))
                parts.append(f"<|{(i - self.timestamp_begin) * TIME_PRECISION:.2f}|>")
                run = []
            else:
                run.append(i)
        parts.append(self.text.decode(run))
        return "".join(parts)

    def _check_ids(self, ids: Any) -> list[int]:
        return _check_ids(ids, "ids", self.vocab_size)

    def __repr__(self) -> str:
        kind = "multilingual" if self.multilingual else "English-only"
        return f"WhisperTokenizer({kind}, vocab_size={self.vocab_size}, languages={len(self.languages)})"
