"""Teaching a text-to-image model a colour word it has never read: ``multimodal train lora`` with a
text-to-image base (a DiT or SiT folder, or a token GPT's).

::

    multimodal train lora --base checkpoints/text2image-sit --target all --rank 8 --alpha 16 \\
        --colour pink --examples 256 --out-dir runs/sit-pink --max-steps 300

**Data.** ``--examples`` fixed renders (at most a few hundred) of ``world.NEW_COLOURS``' ``--colour``
(split ``"new_colour"``), drawn once from ``--data-seed`` over every object except ``UNTAUGHT``
(kept back: the benchmark asks whether the word carries over to objects never shown in it) and
every background, and captioned afresh with a random template each time they are used. A share
``--prior-share`` of every batch is fresh renders of the base world's training split, what the base
was trained on (DreamBooth's prior preservation), so that the adapter keeps the old words. The batch
of step ``s`` is a function of ``(seed, s, rank)``: a resumed run sees what an uninterrupted one would.

**Model and loss.** The base folder's model, frozen, with a LoRA adapter (``multimodal.lora``) on its
``--target`` Linears, trained on the base's own objective (captions dropped for guidance at the
base's rate): for ``TextToImage`` (DiT/SiT) on the text encoder and denoiser, for a token GPT
(``TextToCodes``) on the GPT (cross-entropy of the frozen VQ-VAE's codes). The new word's tokens have
embeddings the base never trained; the adapter's attention and MLP updates learn what they mean.

**Evaluation during training.** The loss on fixed batches (fixed noise and times) of the new colour on
taught objects, on the untaught ones, and of the base world. Whether the images show the colour:
``python -m benchmarks.lora_new_colour``, with the world judge (its palette extended to the new colour).

Run folder: the trainer's files, ``t2i_lora_run.json`` (what a resumed run must match), and ``model/``:
the adapter in peft's format with ``training.json`` and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..config import read_json
from ..data.world import (NEW_COLOURS, CaptionedWorld, WorldBatch, canonical_caption, captions, combinations,
                          random_captions)
from ..errors import InputError
from ..lora import save_lora
from ..models.text2codes import TextToCodes
from ..models.text2image import TextToImage
from ..models.token_gpt import prompt_ids
from ..paths import resolve_model
from .batching import step_generator
from .config import TrainConfig, add_train_args, train_config_from_args
from .lora import adapter_saver, attach_lora, lora_card_lines, reload_adapter
from .runs import (MODEL_DIR, build_model_card, card_notes, check_resume_settings, command_line, markdown_table,
                   publish_model, read_training, run_file)
from . import text2codes, text2image
from .trainer import Trainer

UNTAUGHT = ("sneaker", "bag", "star", "heart")  # objects the examples never show in the new colour
MAX_EXAMPLES = 1000
TAUGHT_SEED, UNTAUGHT_SEED, SEEN_SEED = 30_001, 30_002, 30_003

RECIPE_TRAIN = TrainConfig(out_dir="runs/t2i-lora", max_steps=300, batch_size=64, lr=1e-3, weight_decay=0.0,
                           warmup_steps=20, min_lr_ratio=0.1, grad_clip=1.0, eval_every=100, save_every=100,
                           log_every=10)


def new_colour_combos(colour: str, taught: bool = True) -> list:
    """The new colour's combinations on the taught objects (every object but ``UNTAUGHT``), or on the
    untaught ones, over every background."""
    if colour not in NEW_COLOURS:
        raise InputError(f"colour: expected a new colour ({', '.join(NEW_COLOURS)}), found {colour!r}")
    return [c for c in combinations("new_colour") if c.colour == colour and (c.object not in UNTAUGHT) == taught]


def new_colour_examples(colour: str, n: int, seed: int = 0, fashion=None):
    """The fixed training examples: ``n`` renders of ``colour`` on the taught objects, combinations
    spread evenly (each ``n // combos`` or one more times), one seeded batch -> (uint8 images, combos)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_EXAMPLES:
        raise InputError(f"examples: expected a count in [1, {MAX_EXAMPLES}], found {n!r}")
    combos = new_colour_combos(colour)
    order = torch.randperm(len(combos), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen = [combos[order[i % len(combos)]] for i in range(n)]
    images = CaptionedWorld("new_colour", fashion=fashion).render(chosen, seed)
    return images, chosen


def load_base(base: str) -> TextToImage | TextToCodes:
    """The model a text-to-image adapter is for: a DiT/SiT folder or a token GPT's."""
    folder = resolve_model(base)
    return TextToCodes.from_pretrained(folder) if "gpt" in read_json(folder / "config.json") \
        else TextToImage.from_pretrained(folder)


class _Recipe:
    """What differs between the two kinds of base: where the adapter goes, the batches, the loss."""

    def __init__(self, model):
        self.gpt = isinstance(model, TextToCodes)
        self.model = model
        self.within = ("gpt",) if self.gpt else ("text_encoder", "denoiser")
        self.loss_fn = text2codes.loss_fn if self.gpt else text2image.loss_fn

    def batch(self, images: torch.Tensor, texts: list[str]):
        if not self.gpt:
            return images, texts
        return {"images": images, "text_ids": prompt_ids(self.model.tokenizer, texts, self.model.config.gpt)}

    def eval_fn(self, batches: dict[str, WorldBatch], n: int):
        if not self.gpt:
            return text2image.make_eval_fn(batches, n)
        return text2codes.make_eval_fn({name: (b.images[:n], prompt_ids(self.model.tokenizer, list(b.captions[:n]),
                                                                         self.model.config.gpt))
                                        for name, b in batches.items()})


def make_batch_fn(examples: torch.Tensor, combos: list, prior: CaptionedWorld, batch_size: int, prior_share: float,
                  seed: int, collate=lambda images, texts: (images, texts)):
    """batch_fn(step, rank, world_size) -> ``collate(uint8 images, captions)``: examples drawn with
    replacement and freshly captioned, then ``prior_share`` of the batch rendered from the base world."""
    def batch_fn(step: int, rank: int, world_size: int):
        g = step_generator(seed, step, rank)
        b = batch_size // world_size
        k = round(b * prior_share)
        pick = torch.randint(len(combos), (b - k,), generator=g)
        texts = random_captions([combos[i] for i in pick.tolist()], g)
        images = examples[pick]
        if k:
            base = prior.sample(k, g)
            images, texts = torch.cat([images, base.images]), texts + list(base.captions)
        return collate(images, texts)
    return batch_fn


def train_new_colour(args: argparse.Namespace) -> dict:
    """``multimodal train lora`` for a text-to-image base: see the module docstring."""
    lora = args.lora
    if not 0 <= args.prior_share < 1:
        raise InputError(f"prior-share: expected a share in [0, 1), found {args.prior_share}")
    train_config = train_config_from_args(args)
    out_dir = Path(train_config.out_dir)
    run = {"lora": lora.to_dict(), "colour": args.colour, "examples": args.examples, "data_seed": args.data_seed,
           "prior_share": args.prior_share}
    if args.resume:
        check_resume_settings(run_file(out_dir, "t2i_lora"), run, "the base, adapter and data")
    examples, combos = new_colour_examples(args.colour, args.examples, args.data_seed)
    model = load_base(lora.base)
    recipe = _Recipe(model)
    n = 128
    untaught = new_colour_combos(args.colour, taught=False)
    fixed = {
        "taught": _captioned(CaptionedWorld("new_colour"), new_colour_combos(args.colour), n, TAUGHT_SEED),
        "untaught": _captioned(CaptionedWorld("new_colour"), untaught, n, UNTAUGHT_SEED),
        "seen": CaptionedWorld("train").sample(n, SEEN_SEED),
    }
    torch.manual_seed(train_config.seed)  # the adapter's initial weights
    record = attach_lora(model, lora, within=recipe.within)
    trainer = Trainer(model, train_config, recipe.loss_fn,
                      batch_fn=make_batch_fn(examples, combos, CaptionedWorld("train"), train_config.batch_size,
                                             args.prior_share, train_config.seed, recipe.batch),
                      eval_fn=recipe.eval_fn(fixed, n), resume=args.resume, progress=args.progress,
                      trainable_only=True, save_best=adapter_saver(lora))
    summary, seconds = trainer.train_run(run_file(out_dir, "t2i_lora"), run)
    if not trainer.is_main:
        return summary
    final = trainer.final_model(lambda folder: reload_adapter(model, folder))
    last_eval = next((r for r in reversed(trainer.history) if r.get("kind") == "eval"), {})
    training = {
        "command": command_line(args, "multimodal train lora"),
        "data": (f"{args.examples} fixed renders of {args.colour} objects (every object but {', '.join(UNTAUGHT)}; "
                 f"seed {args.data_seed}) + {100 * args.prior_share:g} % of each batch from the captioned world's "
                 "training split"),
        "colour": args.colour, "examples": args.examples, "untaught_objects": list(UNTAUGHT),
        "prior_share": args.prior_share, **trainer.run_record(seconds),
        "images_seen": trainer.step * train_config.batch_size, "lora": record,
        "parameters": record["trainable_parameters"],
        "final_eval": {k: v for k, v in last_eval.items() if k != "kind"},
    }
    folder = publish_model(out_dir / MODEL_DIR, final, training, model_card,
                           save=lambda tmp: save_lora(final, tmp, base=lora.base),
                           vocabulary=[c for combo in new_colour_combos(args.colour) for c in captions(combo)])
    print(f"final loss: {training['final_eval']}")
    print(f"model: {folder}")
    return {**training, "model_dir": str(folder)}


def _captioned(world: CaptionedWorld, combos: list, n: int, seed: int):
    """A fixed evaluation batch: ``n`` renders cycling over ``combos``, canonical captions."""
    chosen = [combos[i % len(combos)] for i in range(n)]
    return WorldBatch(world.render(chosen, seed), [canonical_caption(c) for c in chosen], [c._asdict() for c in chosen])


# ------------------------------------------------------------------------------------- model card
def model_card(folder: str | Path) -> str:
    """MODEL_CARD.md of a new-colour adapter from its training.json, card_notes.md and, once the
    benchmark has written it, evaluation.json."""
    folder = Path(folder)
    info = read_training(folder)
    lora = info.get("lora", {})
    colour = info.get("colour", "?")
    summary = (f"A LoRA adapter that teaches the text-to-image model `{lora.get('base', '?')}` the colour word "
               f"\"{colour}\", which it had never read or drawn, from {info.get('examples', '?')} example images.")
    details = lora_card_lines(info) if lora else []
    final = info.get("final_eval", {})
    if final:
        details.append("Final loss on fixed batches: " + ", ".join(f"{k.removesuffix('_loss').replace('_', ' ')} {v:.4f}"
                                                                     for k, v in final.items() if k.endswith("_loss")))
    evaluation = folder / "evaluation.json"
    return build_model_card(f"LoRA: \"{colour}\" for {Path(str(lora.get('base', '?'))).name}", summary, info,
                            usage='Load: `multimodal.pipeline("text-to-image", model=this_folder)`, or '
                                  '`pipe.load_lora(this_folder)` on a pipeline of the base.',
                            details=details, unit="images",
                            evaluation=_evaluation_text(read_json(evaluation)) if evaluation.is_file() else
                            "Not evaluated yet: run `python -m benchmarks.lora_new_colour`.",
                            notes=card_notes(folder))


def _evaluation_text(ev: dict) -> str:
    def accuracy(r: dict) -> str:
        split = (f" (seen {100 * r['seen_accuracy']:.1f} %, held out {100 * r['held_out_accuracy']:.1f} %)"
                 if "held_out_accuracy" in r else "")
        return f"{100 * r['prompt_accuracy']:.1f} %{split}"
    rows = [(r["prompts"], r["model"], accuracy(r), f"{100 * r['colour_accuracy']:.1f} %",
             f"{100 * r['object_accuracy']:.1f} %") for r in ev["rows"]]
    return "\n".join([
        f"Measured by `{ev['command']}` (judge: {ev['judge']}; its palette extended to {ev['colour']}); "
        f"{ev['sampling']}, {ev['images_per_prompt']} images per prompt. Prompt accuracy: object, colour and "
        "background all right.", "",
        *markdown_table(("prompts", "model", "prompt accuracy", "colour right", "object right"), rows), "",
        f"Untaught objects ({', '.join(ev['untaught_objects'])}) never appeared in {ev['colour']} in training. "
        f"The judge on real renders of the {ev['colour']} prompts: {100 * ev['judge_ceiling']:.1f} %."])


# -------------------------------------------------------------------------------------------- CLI
def add_train_new_colour_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The data and training options of a text-to-image adapter (``multimodal train lora --base T2I``)."""
    group = parser.add_argument_group("data")
    group.add_argument("--colour", choices=tuple(NEW_COLOURS), default=next(iter(NEW_COLOURS)),
                       help="the new colour word to teach (default %(default)s)")
    group.add_argument("--examples", type=int, default=256,
                       help=f"fixed example renders of it, at most {MAX_EXAMPLES} (default %(default)s)")
    group.add_argument("--data-seed", type=int, default=0, help="seed of the examples (default %(default)s)")
    group.add_argument("--prior-share", type=float, default=0.5,
                       help="share of each batch rendered from the base world's training split (default %(default)s)")
    add_train_args(parser, RECIPE_TRAIN)
    parser.set_defaults(_command_parser=parser)
    return parser

