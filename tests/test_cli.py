"""The ``multimodal`` command: help, version, subcommands, and bad input as one line with status 2."""

import subprocess
import sys
import tomllib
from importlib import import_module
from pathlib import Path

import pytest
from conftest import MODEL, TASK

import multimodal
from multimodal import cli
from multimodal.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def run(*args):
    return subprocess.run([sys.executable, "-m", "multimodal", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_help():
    done = run("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: multimodal")
    assert "pipelines" in done.stdout and "--version" in done.stdout


def test_version():
    done = run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"multimodal {multimodal.__version__}" == "multimodal 0.1.0"


def test_input_error_is_one_line_with_status_2():
    done = run("pipelines", "no-such-task")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("multimodal: error: task: expected")
    assert "no-such-task" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_console_script_points_at_main():
    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["multimodal"]
    module, function = target.split(":")
    assert getattr(import_module(module), function) is cli.main


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main([])
    assert exit.value.code == 2
    assert "expected a command (pipelines" in capsys.readouterr().err


def test_subcommand_input_error_via_main(monkeypatch, capsys):
    def fail(args):
        raise InputError(f"audio: expected a WAV file,\nfound {args.path!r}")

    monkeypatch.setitem(cli.COMMANDS, "fail", cli.Command("fail", "always fails",
                                                          lambda p: p.add_argument("path"), fail))
    assert cli.main(["fail", "x.mp3"]) == 2
    out = capsys.readouterr()
    assert out.err == "multimodal: error: audio: expected a WAV file, found 'x.mp3'\n"
    assert out.out == ""


def test_command_decorator_registers_a_subcommand(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMANDS", {})

    @cli.command("hello", "say hello", lambda p: p.add_argument("--name", default="world"))
    def hello(args):
        print(f"hello {args.name}")
        return 3

    assert cli.main(["hello", "--name", "you"]) == 3
    assert capsys.readouterr().out == "hello you\n"
    assert "say hello" in cli.build_parser().format_help()


def test_pipelines_with_none_registered(empty_registry, capsys):
    assert cli.main(["pipelines"]) == 0
    assert capsys.readouterr().out == "no pipelines are registered yet\n"


def test_pipelines_lists_tasks_and_default_models(tiny_pipeline, capsys):
    assert cli.main(["pipelines"]) == 0
    assert capsys.readouterr().out == f"{TASK}  {MODEL} ({tiny_pipeline})\n"
    assert cli.main(["pipelines", TASK]) == 0
    assert capsys.readouterr().out == f"{TASK}  {MODEL} ({tiny_pipeline})\n"
    (tiny_pipeline / "config.json").unlink()
    (tiny_pipeline / "model.safetensors").unlink()
    tiny_pipeline.rmdir()
    assert cli.main(["pipelines"]) == 0
    assert capsys.readouterr().out == f"{TASK}  {MODEL} (missing)\n"
    assert cli.main(["pipelines", "nope"]) == 2
    assert capsys.readouterr().err == f"multimodal: error: task: expected one of {TASK}, found 'nope'\n"


def test_tokenizer_train_then_encode_round_trips(tmp_path, capsys):
    import json

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 50 + "naïve café ☕\n" * 20)
    assert cli.main(["tokenizer", "train", str(corpus), "--out", str(tmp_path / "tok"), "--vocab-size", "300"]) == 0
    capsys.readouterr()
    assert cli.main(["tokenizer", "encode", str(tmp_path / "tok"), "the lazy café"]) == 0
    ids = json.loads(capsys.readouterr().out)
    from multimodal.tokenizers import TextTokenizer

    tokenizer = TextTokenizer.from_file(tmp_path / "tok")
    assert ids == tokenizer.encode("the lazy café") and tokenizer.decode(ids) == "the lazy café"
    assert len(ids) < len("the lazy café".encode())  # merges were learned
    assert cli.main(["tokenizer", "encode", str(tmp_path / "missing"), "x"]) == 2
    assert "missing" in capsys.readouterr().err
