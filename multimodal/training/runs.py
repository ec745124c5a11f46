"""Run folders and the model folders they publish: file names, the settings a resumed run must
match, the command that redoes a run, and MODEL_CARD.md.

A run folder (``TrainConfig.out_dir``)::

    train_config.json   this run's TrainConfig
    <recipe>_run.json   the recipe's settings a resumed run must match (``run_file``)
    metrics.jsonl       one object per log step ("kind": "train") and per evaluation ("kind": "eval")
    loss.png            the loss curve, redrawn at every save
    checkpoint/         model.safetensors, ema.safetensors, state.safetensors, train_config.json
    best/               the weights that scored best on select_metric, and eval.json
    model/              the published model: the model's own files, training.json, MODEL_CARD.md

``training.json`` holds what the card reports: the command, the data, ``trainer.run_record``'s
numbers (steps, batch, time, device, TrainConfig) and the recipe's own. ``card_notes.md``, written
by hand into a model folder, ends its card as its notes and survives every rebuild of the card.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from ..checkpoint import atomic_write_bytes, atomic_write_text, fresh_tmp_dir, publish_dir
from ..config import read_json
from ..errors import InputError, expect
from ..paths import resolve_model
from ..tokenizers.words import write_vocabulary

# In a run folder
CHECKPOINT_DIR, BEST_DIR, MODEL_DIR = "checkpoint", "best", "model"
EMA_NAME, STATE_NAME, TRAIN_CONFIG_NAME = "ema.safetensors", "state.safetensors", "train_config.json"
METRICS_NAME, PLOT_NAME = "metrics.jsonl", "loss.png"
# In a published model folder
TRAINING_NAME, CARD_NAME, NOTES_NAME = "training.json", "MODEL_CARD.md", "card_notes.md"


def run_file(out_dir: str | Path, recipe: str) -> Path:
    """``<out_dir>/<recipe>_run.json``: the settings of a recipe's run (``vit``, ``t2i``, ``vae``,
    ``whisper``) that a resumed run must match."""
    expect(isinstance(recipe, str) and recipe.isidentifier(), "recipe", "a short name such as 'vit'", repr(recipe))
    return Path(out_dir) / f"{recipe}_run.json"


def command_line(args: argparse.Namespace, command: str) -> str:
    """``command`` (e.g. "multimodal train vit") with every option of ``args`` that differs from its
    parser's default, to redo a run. The parser is ``args._command_parser`` (the train commands set
    it with ``parser.set_defaults(_command_parser=parser)``)."""
    parser = getattr(args, "_command_parser", None)
    words = command.split()
    for action in parser._actions if parser is not None else ():
        if not action.option_strings or action.dest in ("help", "resume", "progress"):
            continue
        value = getattr(args, action.dest, None)
        if value == action.default:
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            words.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            words += [flag, *map(str, value)]
        else:
            words += [flag, "none" if value is None else str(value)]
    return " ".join(words)


def check_resume_settings(path: Path, run: dict, what: str, configs: dict | None = None) -> dict:
    """Before ``--resume``: the settings a run was started with (the JSON file ``path``) must equal
    ``run``, the settings given now; ``what`` names them in the error (e.g. "the model and loss").
    ``configs`` maps keys of ``run`` that hold a ``Config.to_dict()`` to its class: the saved dict is
    read back through that class first, so a config field the saved run does not name (at its
    default) is not a change. Returns the saved settings."""
    if not path.is_file():
        raise InputError(f"resume: expected {path} from the run to continue, found none")
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: expected the run's JSON settings, found an unreadable file ({e})") from None
    for key, cls in (configs or {}).items():
        if isinstance(saved.get(key), dict):
            try:
                saved[key] = json.loads(json.dumps(cls.from_dict(saved[key]).to_dict()))
            except (InputError, TypeError, ValueError):
                pass  # not a config this version reads: left as saved, so it shows as a change below
    now = json.loads(json.dumps(run))  # tuples -> lists, as saved
    changed = [f"{k} ({saved.get(k)!r} in the run, {now[k]!r} now)" for k in now if saved.get(k) != now[k]]
    if changed:
        raise InputError(f"resume: expected {what} that {path.parent} was trained with, "
                         f"found changes: {'; '.join(changed)}")
    return saved


def publish_model(folder: Path, model: nn.Module, training: dict, card: Callable[[Path], str], *,
                  dtype: torch.dtype | None = None, extra_files: dict[str, Path] | None = None,
                  save: Callable[[Path], None] | None = None, vocabulary: Iterable[str] | None = None) -> Path:
    """Write a trained model's folder as a whole: ``model.save_pretrained`` (or ``save(folder)``, as
    for a LoRA adapter), ``extra_files`` ({name: source file} copied in), ``vocabulary.txt`` (the
    words of ``vocabulary``, the training captions of a text-conditioned model), ``training.json``
    and ``MODEL_CARD.md`` (``card(folder)``, reading what was written), into a temporary folder that
    then replaces ``folder``."""
    tmp = fresh_tmp_dir(folder)
    if save is not None:
        save(tmp)
    else:
        model.save_pretrained(tmp, **({"dtype": dtype} if dtype is not None else {}))
    for name, source in (extra_files or {}).items():
        shutil.copyfile(source, tmp / name)
    if vocabulary is not None:
        write_vocabulary(tmp, vocabulary)
    atomic_write_text(tmp / TRAINING_NAME, json.dumps(training, indent=2) + "\n")
    atomic_write_text(tmp / CARD_NAME, card(tmp))
    publish_dir(tmp, folder)
    return folder


def read_training(folder: str | Path) -> dict:
    """The model folder's training.json, or ``{}`` when it has none (a converted or hand-made folder)."""
    path = Path(folder) / TRAINING_NAME
    return read_json(path) if path.is_file() else {}


def card_notes(folder: str | Path | None) -> str | None:
    """The hand-written notes of a model folder (``card_notes.md``: how it was made, caveats), if any."""
    path = Path(folder) / NOTES_NAME if folder is not None else None
    return path.read_text().strip() if path is not None and path.is_file() else None


def plot_losses(history: Sequence[dict], path: Path) -> None:
    """Draw ``loss.png`` from a run's metrics.jsonl records: training loss, and every evaluated
    metric whose name ends in ``loss``, against steps."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    train = [(r["step"], r["loss"]) for r in history if r.get("kind") == "train"]
    if train:
        ax.plot(*zip(*train), label="train loss")
    evals = [r for r in history if r.get("kind") == "eval"]
    for key in sorted({k for r in evals for k in r if k.endswith("loss")}):
        points = [(r["step"], r[key]) for r in evals if key in r]
        ax.plot(*zip(*points), marker="o", label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())

# ------------------------------------------------------------------------------------ model card
def markdown_table(header: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> list[str]:
    """The lines of a markdown table; ``align`` has one letter per column, ``l`` or ``r``."""
    align = align or "l" * len(header)
    expect(len(align) == len(header), "align", f"{len(header)} letters", repr(align))
    rule = ["---:" if a == "r" else "---" for a in align]
    return ["|" + "|".join(f" {cell} " if str(cell) else " " for cell in row) + "|" for row in (header, rule, *rows)]


def parameters_text(parameters: int | dict[str, int]) -> str:
    """``1,296,394 (1.30 M)``; a dict of parts gives the total and each part."""
    if isinstance(parameters, dict):
        parts = ", ".join(f"{name.replace('_', ' ')} {n:,}" for name, n in parameters.items())
        return f"{sum(parameters.values()):,} ({parts})"
    return f"{parameters:,} ({parameters / 1e6:.2f} M)"


def run_text(info: dict, unit: str = "examples") -> str:
    """One line on a run from its training.json: steps, batch, epochs (or examples seen), device,
    speed and time. A resumed run says so: its training time sums every call, its wall time and
    thread count are the last call's."""
    resumed = bool(info.get("resumed"))
    steps, batch = info["steps"], info["batch_size"]
    amount = (f"{info['epochs']:.1f} epochs" if info.get("epochs") is not None else f"{steps * batch:,} {unit}")
    text = f"{steps:,} steps of batch {batch} ({amount}) on {info.get('device', 'an unrecorded device')}"
    threads = info.get("torch_threads")
    if threads:
        text += f" ({threads} thread{'s' if threads != 1 else ''}{' in the last call' if resumed else ''})"
    if info.get("examples_per_s"):
        text += f", median {info['examples_per_s']:.0f} {unit}/s"
    times = []
    if info.get("train_seconds"):
        times.append(f"{info['train_seconds'] / 60:.1f} min of training steps{' over all calls' if resumed else ''}")
    # the shipped text-to-image folders' training.json name it wall_seconds_this_call
    wall = info.get("wall_seconds", info.get("wall_seconds_this_call"))
    if wall:
        times.append(f"{wall / 60:.1f} min wall time{' in the last call' if resumed else ''}")
    if resumed:
        return text + "; resumed" + (": " + ", ".join(times) if times else "")
    return text + ("; " + ", ".join(times) if times else "")


def optimizer_text(train_config: dict) -> str:
    """The optimizer and schedule of a TrainConfig dict, as a card states them."""
    t = train_config
    text = (f"AdamW lr {t['lr']:g}, betas {tuple(t['betas'])}, weight decay {t['weight_decay']:g}; "
            f"{t['warmup_steps']:,} warmup steps, cosine to {t['min_lr_ratio']:g} x lr")
    if t.get("grad_clip") is not None:
        text += f"; gradients clipped to norm {t['grad_clip']:g}"
    if t.get("grad_accum", 1) > 1:
        text += f"; {t['grad_accum']} micro-steps per step"
    if t.get("ema_decay") is not None:
        text += f"; EMA {t['ema_decay']:g} of the weights"
    return text


def build_model_card(title: str, summary: str, info: dict, *, data: str | None = None, facts: Sequence = (),
                     results: Sequence = (), usage: str | None = None, details: Sequence[str] = (),
                     unit: str = "examples", evaluation: str | None = None, notes: str | None = None) -> str:
    """MODEL_CARD.md of a trained model: the parts every recipe shares, written once here.

    ``info`` is the folder's training.json (``{}`` for a folder without one). The card is the
    ``title``; ``summary`` (what the model is) and ``usage`` (how to load it); a table of ``facts``
    (the recipe's rows on the model), then the data (``data``, by default training.json's),
    parameters, run and optimizer from ``info``, then ``results`` (rows such as the selected
    weights); the training command and ``details`` (one bullet each); ``evaluation`` (markdown) and
    ``notes``."""
    expect(isinstance(info, dict), "info", "the dict of a training.json", type(info).__name__)
    missing = [k for k in ("steps", "batch_size") if info and k not in info]
    expect(not missing, "info", "a training.json with steps and batch_size", f"no {', '.join(missing)}")
    rows = list(facts)
    if info:
        if data or info.get("data"):
            rows.append(("training data", data or info["data"]))
        if info.get("parameters") is not None:
            rows.append(("parameters", parameters_text(info["parameters"])))
        rows.append(("training", run_text(info, unit)))
        if info.get("train_config"):
            rows.append(("optimizer", optimizer_text(info["train_config"])))
    rows += results
    lines = [f"# {title}", "", summary.strip(), ""]
    if usage:
        lines += [usage.strip(), ""]
    if rows:
        lines += [*markdown_table(("", ""), rows), ""]
    if info.get("command") or details:
        lines += ["## Training", ""]
        if info.get("command"):
            lines += ["```", info["command"], "```", ""]
        if details:
            lines += [*(f"- {d.strip()}" for d in details), ""]
    if evaluation is not None:
        lines += ["## Evaluation", "", evaluation.strip(), ""]
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- fine-tuning records
def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two modules hold the same weights, up to float16 storage."""
    ours, theirs = a.state_dict(), b.state_dict()
    return ours.keys() == theirs.keys() and all(
        ours[k].shape == theirs[k].shape and torch.allclose(ours[k].float(), theirs[k].float(), rtol=2e-3, atol=1e-3)
        for k in ours)


def init_config(init_from, what: str, asked, recipe, architecture: Sequence[str], tunable: Sequence[str]):
    """With ``--init-from``: the GPT config in the folder's config.json (a ``what`` folder) with the
    command's ``tunable`` fields (``asked``); an ``architecture`` field the command set to other than
    the ``recipe``'s default must agree with the folder."""
    path = resolve_model(init_from) / "config.json"
    gpt = read_json(path).get("gpt") if path.is_file() else None
    if not isinstance(gpt, dict):
        raise InputError(f"--init-from: expected a {what} folder (config.json with a 'gpt'), found {init_from}")
    source = type(asked).from_dict(gpt)
    conflicts = [k for k in architecture
                 if getattr(asked, k) != getattr(recipe, k) and getattr(asked, k) != getattr(source, k)]
    if conflicts:
        raise InputError(f"--init-from: expected GPT flags that agree with {init_from} (or none), found other "
                         f"{', '.join(conflicts)}")
    return source.replace(**{k: getattr(asked, k) for k in tunable})


def check_init_architecture(source, config, folder: Path, architecture: Sequence[str]) -> None:
    """A fine-tuning run's GPT ``config`` (when given) must agree with its starting model's on ``architecture``."""
    if config is not None:
        changed = [k for k in architecture if getattr(source, k) != getattr(config, k)]
        expect(not changed, "init_from", "a GPT of the run's architecture", f"{folder} differing in {', '.join(changed)}")


def init_record(folder: str | Path) -> dict:
    """What training.json says of the starting model: its folder, how it was trained and, when it was
    itself a fine-tune, the record of the model it started from (nested, so the card shows the chain)."""
    before = read_training(folder)
    return {"folder": str(folder), "steps": before.get("steps"), "train_seconds": before.get("train_seconds"),
            "command": before.get("command"), "init_from": before.get("init_from")}


def init_text(init: dict | None, steps: int) -> str:
    """The card's line on the models a fine-tuning run of ``steps`` steps started from, nearest first
    (nothing for a run from scratch)."""
    chain = chain_of(init)
    if not chain:
        return ""
    parts = []
    for record in chain:
        before = (f", trained for {record['steps']:,} steps ({record['train_seconds'] / 60:.1f} min of training steps)"
                  if record.get("steps") and record.get("train_seconds") else "")
        command = f": `{record['command']}`" if record.get("command") else ""
        parts.append(f"`{record['folder']}`{before}{command}")
    total = (f" In all, with this run's {steps:,}: {steps + sum(r['steps'] for r in chain):,} steps."
             if all(r.get("steps") for r in chain) else "")
    return (f"- Started from the weights of {'; which started from the weights of '.join(parts)}. The numbers below "
            f"are this run's alone (a fresh optimizer and learning-rate schedule).{total}\n")


def chain_of(init: dict | None) -> list[dict]:
    """A fine-tune's starting models, nearest first."""
    chain = []
    while init:
        chain.append(init)
        init = init.get("init_from")
    return chain
