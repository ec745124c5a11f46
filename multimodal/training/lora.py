"""Training LoRA adapters with each task's own recipe: ``multimodal train lora``.

::

    multimodal train lora --base tiny.en --target all --rank 8 --alpha 16 \\
        --manifest speech-digits --out-dir runs/digits-lora --max-steps 60 --lr 1e-3

``--base`` names the model the adapter is for; its kind picks the recipe whose data and training
options follow: Whisper checkpoints take ``multimodal train whisper``'s, ViT classifiers ``multimodal
train vit``'s (same classes as the base; the model options are the base's), and text-to-image models
(DiT/SiT and the token GPT) learn a colour word they never read (``multimodal.training.text2image_lora``).
The base stays frozen; only the adapter (``multimodal.lora``) trains, on the shared trainer, whose checkpoints then hold only the adapter's
weights and optimizer state (a few MB; ``--resume`` continues exactly).

Run folder: the recipe's files, and ``model/``: a peft adapter folder (``adapter_config.json`` naming
the base, ``adapter_model.safetensors``) with ``training.json`` and ``MODEL_CARD.md``. It loads with
``pipe.load_lora(folder)``, with ``--lora folder`` on the command line, or as a model on its own
(``multimodal.pipeline(task, model=folder)`` loads the base, then the adapter).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from torch import nn

from ..config import read_json
from ..errors import InputError
from ..lora import TARGETS, add_lora, load_lora, lora_targets, mark_only_lora_trainable, remove_lora, save_lora
from ..paths import resolve_model

DEFAULT_RANK, DEFAULT_ALPHA, DEFAULT_TARGET = 8, 16.0, "attn"


@dataclass(frozen=True)
class LoraOptions:
    """The adapter a run trains: rank ``r``, scaling ``alpha / r``, on the ``target`` Linears."""

    base: str
    r: int = DEFAULT_RANK
    alpha: float = DEFAULT_ALPHA
    target: str = DEFAULT_TARGET

    def to_dict(self) -> dict:
        return {"base": self.base, "r": self.r, "alpha": self.alpha, "target": self.target}


def attach_lora(model: nn.Module, options: LoraOptions, within: Sequence[str] | None = None) -> dict:
    """Freeze ``model`` and give it a fresh adapter as ``options`` say, on the target Linears whose
    names start with one of ``within`` (all when None); returns what the run records about it."""
    names = lora_targets(model, options.target)
    if within is not None:
        names = [n for n in names if n.startswith(tuple(within))]
        if not names:
            raise InputError(f"target: no {options.target} Linear layers under {', '.join(within)}")
    add_lora(model, r=options.r, alpha=options.alpha, target=names)
    trainable = mark_only_lora_trainable(model)
    return {**options.to_dict(), "modules": len(names), "trainable_parameters": sum(p.numel() for p in trainable)}


def adapter_saver(options: LoraOptions):
    """save(model, folder): the adapter in peft's format, naming the base (for best/ and model/)."""
    def save(model: nn.Module, folder: Path) -> None:
        save_lora(model, folder, base=options.base)
    return save


def adapter_trainer_options(lora: LoraOptions | None) -> dict:
    """The Trainer options of a recipe run that trains an adapter (``lora``) or, with None, the model."""
    return {"trainable_only": lora is not None, "save_best": adapter_saver(lora) if lora else None}


def adapter_save(final: nn.Module, lora: LoraOptions | None):
    """``publish_model``'s ``save``: the adapter of ``final`` in peft's format, or None (the model)."""
    return (lambda tmp: save_lora(final, tmp, base=lora.base)) if lora else None


def reload_adapter(model: nn.Module, folder: Path) -> nn.Module:
    """``model`` (a trained run's, adapters attached) with its adapter replaced by the one saved in
    ``folder`` (the run's best/), on the CPU in eval mode."""
    remove_lora(model)
    load_lora(model.cpu(), folder)
    mark_only_lora_trainable(model)
    return model.eval()


def lora_card_lines(info: dict) -> list[str]:
    """Bullets of an adapter's model card: what it adapts and how to load it."""
    lora = info["lora"]
    return [f"LoRA adapter of rank {lora['r']} (alpha {lora['alpha']:g}) on {lora['modules']} {lora['target']} "
            f"Linear layers of `{lora['base']}`: {lora['trainable_parameters']:,} trained parameters; the base "
            f"model is frozen and not stored here.",
            "Load: `pipe.load_lora(this_folder)` on a pipeline of the base model, `--lora this_folder` on the "
            "command line, or this folder as the model (the base is read from adapter_config.json)."]


def adapter_card(info: dict, task: str, unit: str = "examples") -> str:
    """MODEL_CARD.md of an adapter trained by a task's own recipe (the token GPTs'): what it adapts,
    its data and run, from its training.json ``info``."""
    from .runs import build_model_card

    lora = info["lora"]
    summary = (f"A LoRA adapter for the {task} model `{lora['base']}`, trained with that model's recipe on the data "
               "below; the base stays frozen.")
    evaluation = ", ".join(f"{k} {v:.3f}" for k, v in (info.get("eval") or {}).items())
    return build_model_card(f"LoRA adapter for {lora['base']}", summary, info,
                            results=[("last evaluation", evaluation)] if evaluation else (),
                            details=lora_card_lines(info), unit=unit)


# ------------------------------------------------------------------------------------------ CLI
def base_kind(base: str) -> str:
    """The recipe of a base model (``whisper``, ``vit`` or ``text2image``), from its config.json."""
    from ..convert.whisper import DEFAULT_NAME, canonical_name

    if canonical_name(base) == DEFAULT_NAME and not Path(base).exists():
        return "whisper"
    folder = resolve_model(base)
    config = read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    if "n_audio_state" in config:
        return "whisper"
    if "num_classes" in config and "patch_size" in config:
        return "vit"
    if ("denoiser" in config and "objective" in config) or ("gpt" in config and config.get("kind") == "image"):
        return "text2image"
    if "gpt" in config and config.get("kind") == "video":
        return "text2video"
    if "gpt" in config and "voices" in config.get("gpt", {}):
        return "text2speech"
    raise InputError(f"base: expected a Whisper, ViT, text-to-image (DiT/SiT or token GPT), text-to-video or "
                     f"text-to-speech checkpoint (the models `train lora` has recipes for), found {base!r}")


def load_model(name: str) -> nn.Module:
    """The model a checkpoint folder or name holds, of any kind ``train lora`` knows (``base_kind``),
    as its pipeline loads it: the module adapters attach to."""
    kind = base_kind(name)
    if kind == "whisper":
        from ..convert.whisper import load_whisper
        from .whisper import init_folder

        return load_whisper(init_folder(name)).eval()
    if kind == "vit":
        from ..models.vit import ViT

        return ViT.from_pretrained(resolve_model(name)).eval()
    if kind == "text2image":
        from .text2image_lora import load_base

        return load_base(name).eval()
    if kind == "text2video":
        from ..models.text2codes import TextToCodes

        return TextToCodes.from_pretrained(resolve_model(name)).eval()
    from ..models.text2speech import TextToSpeech

    return TextToSpeech.from_pretrained(resolve_model(name)).eval()


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``multimodal lora extract``."""
    parser.add_argument("base", help="the model before fine-tuning (folder or name)")
    parser.add_argument("tuned", help="its full fine-tune (folder or name), the same architecture")
    parser.add_argument("-o", "--out", required=True, help="the adapter folder to write")
    parser.add_argument("--rank", type=int, default=16, help="adapter rank r (default 16)")
    parser.add_argument("--target", choices=TARGETS, default=None,
                        help="which Linears (default: every Linear whose weight the fine-tune changed)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float16",
                        help="the stored weights' type (default float16)")


def run_extract(args: argparse.Namespace) -> dict:
    """``multimodal lora extract``: a fine-tune's change as a LoRA adapter of ``--rank`` for ``base``."""
    import torch

    from ..lora import extract_lora

    if args.rank < 1:
        raise InputError(f"rank: expected an int >= 1, found {args.rank}")
    if base_kind(args.base) != base_kind(args.tuned):
        raise InputError(f"tuned: expected a fine-tune of {args.base}, found a {base_kind(args.tuned)} model")
    model = load_model(args.base)
    report = extract_lora(model, load_model(args.tuned), r=args.rank, target=args.target)
    base = args.base
    if base_kind(base) == "whisper":
        from ..convert.whisper import canonical_name

        base = canonical_name(base)  # adapters name the base as the pipelines load it
    folder = save_lora(model, args.out, base=base, dtype=getattr(torch, args.dtype))
    print(f"{len(report['layers'])} Linear layers, rank {args.rank}: {100 * report['kept']:.1f} % of the change kept; "
          f"{len(report['not_carried'])} other changed tensors not carried"
          + (f" ({', '.join(report['not_carried'][:4])}{', ...' if len(report['not_carried']) > 4 else ''})"
             if report["not_carried"] else ""))
    print(f"adapter: {folder}")
    return report


def add_lora_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    group = parser.add_argument_group("LoRA")
    group.add_argument("--base", required=True, help="the model the adapter is for (folder or name)")
    group.add_argument("--target", choices=TARGETS, default=DEFAULT_TARGET,
                       help=f"which Linears get adapters: attention projections, MLPs or both (default {DEFAULT_TARGET})")
    group.add_argument("--rank", type=int, default=DEFAULT_RANK, help=f"adapter rank r (default {DEFAULT_RANK})")
    group.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                       help=f"adapter scaling alpha; the update is alpha / r * B A (default {DEFAULT_ALPHA:g})")
    return parser


def lora_options(args: argparse.Namespace) -> LoraOptions:
    if args.rank < 1:
        raise InputError(f"rank: expected an int >= 1, found {args.rank}")
    if not args.alpha > 0:
        raise InputError(f"alpha: expected a number > 0, found {args.alpha}")
    return LoraOptions(base=args.base, r=args.rank, alpha=args.alpha, target=args.target)


def recipes() -> dict:
    """kind -> (add_arguments, run) of the recipes that train adapters."""
    from . import text2codes, text2image_lora, text2speech, vit, whisper

    return {"whisper": (whisper.add_train_whisper_arguments, whisper.run_train_whisper),
            "vit": (vit.add_train_vit_arguments, vit.run_train_vit),
            "text2image": (text2image_lora.add_train_new_colour_arguments, text2image_lora.train_new_colour),
            "text2video": (text2codes.add_train_text2video_arguments, text2codes.run_train_text2codes),
            "text2speech": (text2speech.add_train_text2speech_arguments, text2speech.run_train_text2speech)}


def add_train_lora_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``multimodal train lora``: the LoRA options; the other options go to the base's recipe
    (``multimodal train whisper --help`` or ``train vit --help`` lists them; text-to-image bases take
    ``--colour``, ``--examples``, ``--prior-share`` and the training options, see
    ``multimodal.training.text2image_lora``)."""
    parser.description = ("Train a LoRA adapter for --base with its recipe: the options below, then the options of "
                          "`multimodal train whisper` (Whisper bases), `train vit` (ViT bases), `train text2video` "
                          "(text-to-video GPTs) or `train text2speech` (text-to-speech GPTs; the model options are "
                          "the base's); a text-to-image base (DiT/SiT or token GPT) learns a new colour word "
                          "(--colour, --examples, --prior-share).")
    add_lora_arguments(parser)
    parser.set_defaults(_takes_extra=True)
    return parser


def run_train_lora(args: argparse.Namespace) -> dict:
    """Parse the command line again with the base's recipe plus the LoRA options, then train."""
    kind = base_kind(args.base)
    add_arguments, run = recipes()[kind]
    parser = argparse.ArgumentParser(prog="multimodal train lora",
                                     description=f"a LoRA adapter for {args.base} with the {kind} recipe")
    add_arguments(parser)
    add_lora_arguments(parser)
    if kind == "whisper":
        from ..convert.whisper import canonical_name

        args.base = canonical_name(args.base)  # adapters name the base as the pipelines load it
        parser.set_defaults(init=args.base)
    own = ["--base", args.base, "--target", args.target, "--rank", str(args.rank), "--alpha", str(args.alpha)]
    inner = parser.parse_args([*own, *getattr(args, "extra", [])])
    inner.lora = lora_options(inner)
    return run(inner)
