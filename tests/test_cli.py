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


def test_outputs_are_checked_before_any_work(tmp_path):
    from multimodal.cli.command import check_outputs

    a, b = tmp_path / "new" / "a.txt", tmp_path / "b.txt"
    check_outputs([a, b], overwrite=False, option="-o")
    assert not (tmp_path / "new").exists()  # checked, not made
    b.write_text("mine")
    with pytest.raises(InputError, match=r"-o: .*b.txt already exists; pass --overwrite"):
        check_outputs([a, b], overwrite=False, option="-o")
    check_outputs([a, b], overwrite=True, option="-o")
    with pytest.raises(InputError, match="two inputs writing"):
        check_outputs([a, a], overwrite=True, option="-o")
    with pytest.raises(InputError, match="expected a file name, found the folder"):
        check_outputs([tmp_path], overwrite=True, option="-o")
    with pytest.raises(InputError, match="expected a folder, found the file .*b.txt in the way"):
        check_outputs([b / "c.txt"], overwrite=True, option="-o")
    with pytest.raises(InputError, match="-o: expected a folder this user can write, found /proc/nope"):
        check_outputs([Path("/proc/nope/c.txt")], overwrite=False, option="-o")
    assert b.read_text() == "mine"


def test_a_config_that_is_not_utf8_is_an_input_error(tmp_path):
    from multimodal.config import read_json

    (tmp_path / "config.json").write_bytes(b'{"a": "\xff"}')
    with pytest.raises(InputError, match="config.json: expected UTF-8 JSON text, found a byte that is not UTF-8 at "
                                         "offset 7"):
        read_json(tmp_path / "config.json")


def test_warnings_print_as_one_line(monkeypatch, capsys):
    import warnings

    @cli.command("warn-test", "a test command")
    def warn_test(args):
        warnings.warn("first line\nsecond line")

    try:
        assert cli.main(["warn-test"]) == 0
    finally:
        cli.COMMANDS.pop("warn-test")
    assert capsys.readouterr().err == "multimodal: warning: first line second line\n"
