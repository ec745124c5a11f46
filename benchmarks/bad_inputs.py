"""The bad inputs tried on each entry point (the command, the Python API, the app's HTTP API) and what
each gets: the table in ``benchmarks/results/bad_inputs.md``.

Every case must end in a clean answer: the command exits with status 2 and one line, Python raises
``InputError`` (or warns, where the input is usable), the app answers with the project's message.
Anything else (a traceback, another exception, a file written or overwritten) is a failure, and
the script exits with status 1.

    python -m benchmarks.bad_inputs       # -> benchmarks/results/bad_inputs.{md,json}
"""

from __future__ import annotations

import contextlib
import io
import socket
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
from PIL import Image

from benchmarks.common import machine_info, markdown_table, write_results

PROMPT = "a red circle on a black background"


def _cli(*argv) -> Callable[[], str]:
    def run() -> str:
        from multimodal import cli

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                status = cli.main([str(a) for a in argv])
            except SystemExit as e:  # argparse
                status = e.code
        shown = next((line for line in err.getvalue().splitlines() if "error:" in line or "warning:" in line), "")
        return f"exit {status}: {shown}" if status else f"ok{': ' + shown if shown else ''}"
    return run


def _python(fn: Callable[[], object]) -> Callable[[], str]:
    def run() -> str:
        from multimodal.errors import InputError

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                value = fn()
            except InputError as e:
                return f"InputError: {e}"
        said = [str(w.message) for w in caught if "multimodal" in (w.filename or "") or "Truncated" in
                type(w.message).__name__]
        if said:
            return f"ok, warns: {said[0]}"
        return f"ok: {value}" if isinstance(value, str) else "ok"
    return run


def cases(folder: Path, client) -> list[tuple[str, str, Callable[[], str], str]]:
    """(entry point, input, run, what a clean answer starts with)."""
    import multimodal
    from multimodal.lora import add_lora

    wav = folder / "speech.wav"
    sf.write(wav, (0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000, subtype="PCM_16")
    cut = folder / "cut.wav"
    cut.write_bytes(wav.read_bytes()[:44 + 8000])
    nan = folder / "nan.wav"
    sf.write(nan, np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT")
    noise = folder / "noise.wav"
    noise.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64))
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    broken = folder / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = folder / "shirt.png"
    Image.new("L", (28, 28), 0).save(good)
    existing = folder / "exists.png"
    existing.write_bytes(b"mine")
    badcfg = folder / "badcfg"
    badcfg.mkdir()
    (badcfg / "config.json").write_bytes(b'{"a": "\xff"}')
    (folder / "twin").mkdir()
    twin = folder / "twin" / "speech.wav"
    twin.write_bytes(wav.read_bytes())
    out = folder / "out"

    asr = multimodal.pipeline("automatic-speech-recognition", device="cpu")
    t2i = multimodal.pipeline("text-to-image", device="cpu")
    vit = multimodal.pipeline("image-classification", device="cpu")
    for p in (asr, t2i, vit):
        p.set_progress_bar_config(disable=True)

    rows = [
        ("command", "transcribe a missing file", _cli("transcribe", folder / "nope.wav"), "exit 2"),
        ("command", "transcribe a folder", _cli("transcribe", folder), "exit 2"),
        ("command", "transcribe an empty file", _cli("transcribe", empty, "--output-dir", out), "exit 2"),
        ("command", "transcribe garbage with a WAV header", _cli("transcribe", noise, "--output-dir", out), "exit 2"),
        ("command", "a good file, then one with NaN samples", _cli("transcribe", wav, nan, "--output-dir", out), "exit 2"),
        ("command", "two inputs with one name", _cli("transcribe", wav, twin, "--output-dir", out), "exit 2"),
        ("command", "--beam-size 0", _cli("transcribe", wav, "--beam-size", 0, "--output-dir", out), "exit 2"),
        ("command", "--beam-size 10000", _cli("transcribe", wav, "--beam-size", 10000, "--output-dir", out), "exit 2"),
        ("command", "--seed -1 (transcribe)", _cli("transcribe", wav, "--seed", -1, "--output-dir", out), "exit 2"),
        ("command", "--output-dir that cannot be written", _cli("transcribe", wav, "--output-dir", "/proc/x"), "exit 2"),
        ("command", "a WAV cut short of its header's length", _cli("transcribe", cut, "--output-dir", out), "ok"),
        ("command", "outputs that exist, without --overwrite", _cli("transcribe", cut, "--output-dir", out), "exit 2"),
        ("command", "--model folder with a non-UTF-8 config.json", _cli("transcribe", wav, "--model", badcfg), "exit 2"),
        ("command", "classify a broken PNG", _cli("classify", broken), "exit 2"),
        ("command", "classify --top-k 0", _cli("classify", good, "--top-k", 0), "exit 2"),
        ("command", "classify a blank picture", _cli("classify", good), "ok"),
        ("command", "generate -o picture.jpg", _cli("generate", "image", PROMPT, "-o", folder / "a.jpg"), "exit 2"),
        ("command", "generate -n 0", _cli("generate", "image", PROMPT, "-n", 0, "-o", folder / "b.png"), "exit 2"),
        ("command", "generate --steps 5000", _cli("generate", "image", PROMPT, "--steps", 5000, "-o", folder / "c.png"),
         "exit 2"),
        ("command", "generate --seed 2**64", _cli("generate", "image", PROMPT, "--seed", 2 ** 64, "-o", folder / "d.png"),
         "exit 2"),
        ("command", "generate --sampler ddim (a DiT sampler) on SiT",
         _cli("generate", "image", PROMPT, "--sampler", "ddim", "-o", folder / "e.png"), "exit 2"),
        ("command", "generate --top-k (a GPT option) on SiT",
         _cli("generate", "image", PROMPT, "--top-k", 5, "-o", folder / "f.png"), "exit 2"),
        ("command", "generate -o into a folder that cannot be written",
         _cli("generate", "image", PROMPT, "-o", "/proc/x/a.png"), "exit 2"),
        ("command", "generate -o an existing file, without --overwrite",
         _cli("generate", "image", PROMPT, "-o", existing), "exit 2"),
        ("command", "generate \"a cat\" (a word it never read)",
         _cli("generate", "image", "a cat", "--steps", 2, "-o", folder / "g.png"), "ok"),
        ("command", "codes decode of text that is not JSON", _cli("codes", "decode", "[[1, 2", "-o", folder / "h.png"),
         "exit 2"),
        ("Python", "text-to-image prompt=123", _python(lambda: t2i(123)), "InputError"),
        ("Python", "text-to-image generator=2**64", _python(lambda: t2i(PROMPT, generator=2 ** 64)), "InputError"),
        ("Python", "text-to-image num_images_per_prompt=0", _python(lambda: t2i(PROMPT, num_images_per_prompt=0)),
         "InputError"),
        ("Python", "text-to-image a 50-word prompt", _python(lambda: t2i(" ".join(["red"] * 50), num_inference_steps=2)
                                                            .warnings[0]), "ok"),
        ("Python", "speech recognition of 0 bytes", _python(lambda: asr(b"")), "InputError"),
        ("Python", "speech recognition of an empty array", _python(lambda: asr(np.zeros(0), sampling_rate=16000)),
         "InputError"),
        ("Python", "speech recognition seed=-1", _python(lambda: asr(str(wav), seed=-1)), "InputError"),
        ("Python", "speech recognition beam_size=100", _python(lambda: asr(str(wav), beam_size=100)), "InputError"),
        ("Python", "speech recognition of a cut WAV", _python(lambda: asr(str(cut))), "ok, warns"),
        ("Python", "classify an empty list", _python(lambda: vit([])), "InputError"),
        ("Python", "classify a broken file", _python(lambda: vit(str(broken))), "InputError"),
        ("Python", "load_lora of a folder that is not an adapter", _python(lambda: t2i.load_lora(folder)), "InputError"),
        ("Python", "add_lora rank 0", _python(lambda: add_lora(vit.model, "x", r=0)), "InputError"),
    ]
    if client is not None:
        from gradio_client import handle_file

        def app(*args, api_name):
            def run():
                try:
                    client.predict(*args, api_name=api_name)
                except Exception as e:  # noqa: BLE001 (the app's answer is the exception's message)
                    return f"message: {' '.join(str(e).split())}"
                return "ok"
            return run

        rows += [
            ("app API", "classify a broken upload", app(handle_file(str(broken)), 5, "none", api_name="/classify"),
             "message: broken.png"),
            ("app API", "transcribe garbage with a WAV header",
             app(handle_file(str(noise)), 1, True, "none", api_name="/transcribe"), "message: noise.wav"),
            ("app API", "transcribe nothing", app(None, 1, True, "none", api_name="/transcribe"), "message: audio"),
            ("app API", "generate with seed 2**64",
             app(PROMPT, "SiT", "default", 2, 4.0, False, 2 ** 64, 1, 1.0, 0, 1.0, "none", api_name="/generate"),
             "message: seed"),
            ("app API", "generate with an unknown model",
             app(PROMPT, "GAN", "default", 2, 4.0, False, 0, 1, 1.0, 0, 1.0, "none", api_name="/generate"),
             "message: "),  # Gradio's own check of a radio's choices answers first
        ]
    return rows


def main(argv: list[str] | None = None) -> int:
    from gradio_client import Client

    from multimodal import app
    from multimodal.app.common import MAX_FILE_SIZE

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.build()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=MAX_FILE_SIZE)
    results, failures = [], 0
    try:
        client = Client(demo.local_url, verbose=False)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for entry, what, run, expected in cases(folder, client):
                try:
                    got = run()
                except Exception as e:  # noqa: BLE001 (exactly what must not happen)
                    got = f"UNCAUGHT {type(e).__name__}: {e}"
                got = got.replace(str(folder) + "/", "").replace(str(folder), "FOLDER")
                ok = got.startswith(expected) and (folder / "exists.png").read_bytes() == b"mine"
                failures += not ok
                results.append({"entry point": entry, "input": what, "answer": got[:220], "clean": ok})
                print(f"{'ok ' if ok else 'BAD'} {entry}: {what}: {got[:160]}", flush=True)
    finally:
        demo.close()
    table = markdown_table(["entry point", "input", "answer", "clean"],
                           [[r["entry point"], r["input"], r["answer"].replace("|", "/"), "yes" if r["clean"] else "**no**"]
                            for r in results])
    data = {"command": "python -m benchmarks.bad_inputs", "machine": machine_info(), "cases": results,
            "clean": len(results) - failures, "total": len(results)}
    path = write_results("bad_inputs", data)
    path.with_suffix(".md").write_text(f"# Bad inputs and what each entry point answers\n\n`python -m benchmarks."
                                       f"bad_inputs`: {len(results) - failures} of {len(results)} clean.\n\n{table}\n")
    print(f"{len(results) - failures} of {len(results)} clean; results: {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
