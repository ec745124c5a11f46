"""Byte-level BPE: training time on the offline text corpora, and encode throughput of our
``TextTokenizer`` against tiktoken and the raw Hugging Face ``tokenizers`` engine.

All three encoders use the same vocabulary: the one trained here, handed to tiktoken as byte ranks
(``TextTokenizer.mergeable_ranks()``) with the same split pattern, and GPT-2's (openai-whisper's
bundled ``gpt2.tiktoken``). Before timing, the script checks that all three produce identical ids
on the whole sample. Encoding is batched, on ``--threads`` threads (Rayon for the engine, tiktoken's
own thread pool).

The corpus is the Debian text packages of DATA.md, built once into ``<cache>/corpora/bpe/``:

    apt-get install -y python3.11-doc wordnet-base dict-gcide bible-kjv fortunes wamerican
    python -m benchmarks.bpe            # full run (~70 MB, vocab 8192), writes results/bpe.json
    python -m benchmarks.bpe --quick    # 2 MB, vocab 1000; writes nothing unless --out
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from multimodal.checkpoint import atomic_write_text
from multimodal.paths import cache_dir

from .common import interleaved, markdown_table, median, write_results

FULL = dict(vocab_size=8192, corpus_mb=None, sample_mb=4.0, doc_kb=4, repeats=5, gpt2=True)
QUICK = dict(vocab_size=1000, corpus_mb=2.0, sample_mb=0.5, doc_kb=4, repeats=3, gpt2=False)
SPECIAL = "<|endoftext|>"
PYDOC = Path("/usr/share/doc/python3.11/html/_sources")


# ----------------------------------------------------------------------------------------- corpus
def _python_docs() -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in sorted(PYDOC.rglob("*.txt")))


def _wordnet_glosses() -> str:
    # data.* lines: synset fields, then " | " and the gloss with its examples; the licence header
    # lines start with two spaces.
    lines = []
    for pos in ("noun", "verb", "adj", "adv"):
        for line in Path(f"/usr/share/wordnet/data.{pos}").read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith("  ") and " | " in line:
                lines.append(line.split(" | ", 1)[1].strip())
    return "\n".join(lines) + "\n"


def _gcide() -> str:
    with gzip.open("/usr/share/dictd/gcide.dict.dz") as f:  # dictzip is gzip with an index
        return f.read().decode("utf-8", errors="replace")  # three cp1252 quotes are not UTF-8


def _bible() -> str:
    return subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout


def _fortunes() -> str:
    folder = Path("/usr/share/games/fortunes")
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in sorted(folder.iterdir())
                     if p.is_file() and not p.is_symlink() and "." not in p.name)


def _words() -> str:
    return Path("/usr/share/dict/american-english").read_text(encoding="utf-8", errors="replace")


SOURCES = {  # name: (Debian package, reader, what must exist)
    "python-docs": ("python3.11-doc", _python_docs, PYDOC),
    "wordnet": ("wordnet-base", _wordnet_glosses, Path("/usr/share/wordnet/data.noun")),
    "gcide": ("dict-gcide", _gcide, Path("/usr/share/dictd/gcide.dict.dz")),
    "bible-kjv": ("bible-kjv", _bible, Path("/usr/bin/bible")),
    "fortunes": ("fortunes", _fortunes, Path("/usr/share/games/fortunes/cookie")),
    "wamerican": ("wamerican", _words, Path("/usr/share/dict/american-english")),
}


def build_corpus(folder: Path) -> dict[str, Path]:
    """One UTF-8 file per source under ``folder`` (built once, then reused)."""
    missing = [pkg for pkg, _, probe in SOURCES.values() if not probe.exists()]
    if missing:
        sys.exit(f"benchmarks.bpe: the corpus needs Debian packages: apt-get install -y {' '.join(missing)}")
    files = {}
    for name, (_, read, _) in SOURCES.items():
        path = folder / f"{name}.txt"
        if not path.exists():
            atomic_write_text(path, read())
        files[name] = path
    return files


def documents(text: str, size: int) -> list[str]:
    """``text`` cut at line ends into documents of about ``size`` characters."""
    docs, start = [], 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        docs.append(text[start:end])
        start = end
    return docs


# ------------------------------------------------------------------------------------------- main
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke run; writes nothing unless --out")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vocab-size", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--sample-mb", type=float, help="MB of the corpus to encode")
    parser.add_argument("--no-gpt2", action="store_true", help="skip the GPT-2 vocabulary rows")
    parser.add_argument("--corpus-dir", type=Path, default=None, help="default: <cache>/corpora/bpe")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    for key in ("vocab_size", "repeats", "sample_mb"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg["gpt2"] = cfg["gpt2"] and not args.no_gpt2
    # Rayon sizes its pool from this on first use, which comes below.
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"

    import tiktoken
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from multimodal.tokenizers.bpe import GPT2_PATTERN, read_tiktoken_file
    from multimodal.tokenizers.text import TextTokenizer

    files = build_corpus(args.corpus_dir or cache_dir() / "corpora" / "bpe")
    sizes = {name: path.stat().st_size for name, path in files.items()}
    train_files = list(files.values())
    if cfg["corpus_mb"] is not None:  # --quick: the first MB of every source, together corpus_mb
        quick = (args.corpus_dir or cache_dir() / "corpora" / "bpe") / "quick"
        per = int(cfg["corpus_mb"] * 1e6 / len(files))
        train_files = []
        for name, path in files.items():
            with open(path, encoding="utf-8") as f:
                text = f.read(per)
            atomic_write_text(quick / f"{name}.txt", text)
            train_files.append(quick / f"{name}.txt")
    corpus_bytes = sum(p.stat().st_size for p in train_files)
    print(f"corpus: {corpus_bytes / 1e6:.1f} MB in {len(train_files)} files "
          f"({', '.join(f'{n} {s / 1e6:.1f}' for n, s in sizes.items())} MB); {args.threads} threads")

    # ---- training: ours (Python reads the files, splitting at special tokens) vs the raw engine
    start = time.perf_counter()
    ours = TextTokenizer.train(files=train_files, vocab_size=cfg["vocab_size"], min_frequency=2,
                               special_tokens=[SPECIAL], pattern="gpt2")
    train_ours = time.perf_counter() - start
    engine = tokenizers.Tokenizer(models.BPE())
    engine.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    engine.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg["vocab_size"], min_frequency=2, special_tokens=[SPECIAL],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    start = time.perf_counter()
    engine.train([str(p) for p in train_files], trainer=trainer)
    train_raw = time.perf_counter() - start
    ours_vocab, raw_vocab = set(ours.mergeable_ranks()), set(TextTokenizer(engine).mergeable_ranks())
    vocab_overlap = len(ours_vocab & raw_vocab) / len(ours_vocab | raw_vocab)
    train_rows = [["TextTokenizer.train (ours)", train_ours, corpus_bytes / 1e6 / train_ours, ours.vocab_size],
                  ["tokenizers Tokenizer.train", train_raw, corpus_bytes / 1e6 / train_raw, engine.get_vocab_size()]]
    print()
    print(markdown_table(["training", "s", "MB/s", "vocab"], train_rows))
    print(f"vocabulary overlap (Jaccard): {vocab_overlap:.4f}")

    # ---- encoding: the same documents through all three, same vocabulary
    sample_chars = int(cfg["sample_mb"] * 1e6)
    text = "".join(p.read_text(encoding="utf-8")[: sample_chars // len(train_files)] for p in train_files)
    docs = documents(text, cfg["doc_kb"] * 1000)
    sample_bytes = len(text.encode())
    vocabularies = {f"trained {ours.vocab_size}": ours}
    if cfg["gpt2"]:
        import importlib.util
        ranks = Path(importlib.util.find_spec("whisper").origin).parent / "assets" / "gpt2.tiktoken"
        vocabularies["gpt2 50257"] = TextTokenizer.from_tiktoken(read_tiktoken_file(ranks), {SPECIAL: 50256})
    results, rows = {}, []
    for vocab_name, tok in vocabularies.items():
        reference = tiktoken.Encoding(f"bench-{vocab_name}", pat_str=tok.pattern, mergeable_ranks=tok.mergeable_ranks(),
                                      special_tokens=tok.special_tokens)
        with tempfile.TemporaryDirectory() as tmp:  # the raw engine loads the very same file
            raw = tokenizers.Tokenizer.from_file(str(tok.save(tmp)))
        assert tok.pattern == GPT2_PATTERN
        candidates = {
            "ours": lambda tok=tok: tok.encode_batch(docs).ids,
            "tokenizers": lambda raw=raw: [e.ids for e in raw.encode_batch_fast(docs, add_special_tokens=False)],
            "tiktoken": lambda ref=reference: ref.encode_ordinary_batch(docs, num_threads=args.threads),
        }
        outputs = {name: fn() for name, fn in candidates.items()}
        mismatched = {name: sum(a != b for a, b in zip(out, outputs["tiktoken"])) for name, out in outputs.items()}
        n_tokens = sum(map(len, outputs["ours"]))
        times = interleaved(candidates, repeats=cfg["repeats"], warmup=0)
        results[vocab_name] = {
            "identical_ids": all(v == 0 for v in mismatched.values()), "mismatched_documents": mismatched,
            "documents": len(docs), "tokens": n_tokens, "bytes": sample_bytes,
            "candidates": {name: {"median_s": median(ts), "min_s": min(ts), "max_s": max(ts), "times_s": ts,
                                  "MB_per_s": sample_bytes / 1e6 / median(ts),
                                  "tokens_per_s": n_tokens / median(ts)} for name, ts in times.items()},
        }
        for name, ts in times.items():
            rows.append([vocab_name, name, median(ts), min(ts), sample_bytes / 1e6 / median(ts),
                         n_tokens / median(ts) / 1e6, median(times["tiktoken"]) / median(ts),
                         "yes" if mismatched[name] == 0 else f"{mismatched[name]} docs differ"])
    print()
    print(f"encode: {sample_bytes / 1e6:.1f} MB in {len(docs)} documents of ~{cfg['doc_kb']} kB, batched, "
          f"{args.threads} threads, median of {cfg['repeats']}")
    print(markdown_table(["vocabulary", "encoder", "median s", "min s", "MB/s", "M tokens/s", "x tiktoken",
                          "ids == tiktoken"], rows))

    if args.quick and args.out is None:
        return
    path = write_results("bpe", {
        "config": {**cfg, "threads": args.threads, "quick": args.quick, "pattern": "gpt2", "special": [SPECIAL]},
        "versions": {"tokenizers": version("tokenizers"), "tiktoken": version("tiktoken")},
        "corpus": {"files_bytes": sizes, "train_bytes": corpus_bytes},
        "training": {"ours_s": train_ours, "tokenizers_s": train_raw, "ours_vocab_size": ours.vocab_size,
                     "tokenizers_vocab_size": engine.get_vocab_size(), "vocab_jaccard": vocab_overlap},
        "encode": results,
    }, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
