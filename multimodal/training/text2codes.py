"""Training the text -> codes GPT on the captioned world: ``multimodal train text2codes``.

::

    multimodal train text2codes --vq runs/image-vq/model --tokenizer checkpoints/text2image-sit/tokenizer.json \
        --out-dir runs/text2image-gpt
    multimodal train text2codes --vq runs/image-vq/model --tokenizer checkpoints/text2image-sit/tokenizer.json \
        --out-dir runs/text2image-gpt --resume

The command's defaults are the recipe of ``checkpoints/text2image-gpt``: 6 blocks of width 192, 2,800
steps of 128 from a code cache of 80,000 renders, about 50 minutes of steps on 2 CPU cores.

(Python: ``train_text2codes(out_dir, vq=..., steps=..., config=TokenGPTConfig(...), ...)``.)

**Data.** Captioned renders of ``CaptionedWorld("train")`` (held-out colour/object pairs are never
rendered), streamed: the batch of optimizer step ``s`` has its own generator seeded by ``(seed, s,
rank)``. The frozen VQ-VAE (``--vq``) turns each image into its code grid on the training device;
the caption becomes the prompt. With ``--code-cache N`` the VQ-VAE codes ``N`` renders once
(``code_cache.safetensors`` in the run folder, reused on resume) and each step draws its batch from
them with replacement: on a CPU, where rendering and encoding are a third of a streamed step, this
buys more steps per hour. Prompts are dropped (the empty prompt) with probability ``--cond-drop``
for classifier-free guidance.

**Tokenizer.** ``--tokenizer`` names a ``tokenizer.json``; without it a byte-level BPE is trained on
the captions and the general corpus, as for text-to-image (``train_caption_tokenizer``).

**Loss.** Cross-entropy of each code given the prompt and the codes before it. Evaluations log the
teacher-forced loss on fixed batches of seen and held-out combinations.

Run folder: the trainer's files, ``text2codes_run.json``, ``tokenizer.json`` and ``model/`` (a
``TextToCodes`` folder: the GPT, ``tokenizer.json``, the VQ-VAE in ``vq/``, training.json and
MODEL_CARD.md). Prompt accuracy under the world judge is measured by ``benchmarks/text_to_image.py``.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..checkpoint import count_parameters, fresh_tmp_dir, publish_dir
from ..config import read_json
from ..data.world import CaptionedWorld, caption_corpus
from ..data.world_video import clip_caption_corpus
from ..errors import InputError, expect
from ..models.autoencoders.vq import VQVAE
from ..models.text2codes import TOKENIZER_NAME, VQ_DIR, TextToCodes, TextToCodesConfig
from ..models.token_gpt import TokenGPTConfig, prompt_ids
from ..paths import resolve_model
from ..tokenizers.text import TextTokenizer
from .batching import step_generator
from .config import TrainConfig, add_train_args, train_config_from_args
from .runs import CARD_NAME, MODEL_DIR, NOTES_NAME, TRAINING_NAME, build_model_card, card_notes, \
    check_init_architecture, check_resume_settings, command_line, init_config, init_record, init_text, markdown_table, \
    publish_model, read_training, run_file, same_weights
from .text2image import train_caption_tokenizer
from .lora import LoraOptions, adapter_card, adapter_save, adapter_trainer_options, attach_lora, reload_adapter
from .trainer import Trainer
from .vqvae import input_size_of, to_unit, worlds_of

HELD_OUT_SEED, SEEN_SEED, CODE_CACHE_SEED = 50_001, 50_002, 50_003
CODE_CACHE_NAME = "code_cache.safetensors"
RECIPE_CODE_CACHE = 80_000  # the command's default: on a CPU, coding renders once buys more steps per hour

RECIPE_MODEL = TokenGPTConfig(codebook_size=512, grid=(8, 8), text_vocab=4096, text_length=16, width=192, depth=6,
                              heads=6, positions="learned", dropout=0.0, cond_drop=0.1)
RECIPE_TRAIN = TrainConfig(out_dir="runs/text2image-gpt", max_steps=2800, batch_size=128, lr=1e-3, weight_decay=0.05,
                           warmup_steps=200, min_lr_ratio=0.05, grad_clip=1.0, ema_decay=None, eval_every=1000,
                           save_every=500, log_every=50)
# Clips: 4x8x8 = 256 codes after a prompt of up to 24 tokens (clip captions are longer than image ones). The
# image GPT's size with rotary positions (relative offsets: a frame's codes sit 64 places after the previous
# frame's), on batches of 32 so that an hour on 2 cores still gives 3,000 steps.
RECIPE_VIDEO_MODEL = RECIPE_MODEL.replace(text_length=24, positions="rotary")
RECIPE_VIDEO_TRAIN = RECIPE_TRAIN.replace(out_dir="runs/text2video-gpt", batch_size=32, max_steps=3000)
RECIPE_VIDEO_CODE_CACHE = 40_000


def _unwrap(model) -> TextToCodes:
    """The TextToCodes inside a DDP or compiled wrapper."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def make_batch_fn(world: CaptionedWorld, tokenizer: TextTokenizer, config: TokenGPTConfig, batch_size: int,
                  seed: int):
    """batch_fn(step, rank, world_size) -> {"images": uint8 [b, 3, H, W] (clips [b, 3, T, H, W] from a
    MovingWorld), "text_ids": [b, text_length]}."""
    def batch_fn(step: int, rank: int, world_size: int):
        batch = world.sample(batch_size // world_size, step_generator(seed, step, rank))
        return {"images": batch[0], "text_ids": prompt_ids(tokenizer, list(batch.captions), config)}
    return batch_fn


def make_cached_batch_fn(cache: dict[str, torch.Tensor], batch_size: int, seed: int):
    """batch_fn(step, rank, world_size) -> {"codes": [b, *grid], "text_ids": [b, text_length]}: examples
    of the code cache drawn with replacement by the step's own generator."""
    n = cache["codes"].shape[0]

    def batch_fn(step: int, rank: int, world_size: int):
        index = torch.randint(n, (batch_size // world_size,), generator=step_generator(seed, step, rank))
        return {"codes": cache["codes"][index].long(), "text_ids": cache["text_ids"][index]}
    return batch_fn


def build_code_cache(path: Path, world: CaptionedWorld, model: TextToCodes, size: int, seed: int,
                     chunk: int = 512) -> dict[str, torch.Tensor]:
    """``size`` training renders (drawn from ``(seed, CODE_CACHE_SEED)``) as the model's flat code
    sequences and prompt ids:
    read from ``path`` when the run already wrote it, else encoded chunk by chunk and written there."""
    if path.is_file():
        cache = load_file(path)
        expect(cache["codes"].shape[0] == size, "code_cache", f"the {size} examples this run was started with",
               cache["codes"].shape[0])
        return cache
    generator = torch.Generator().manual_seed(seed * 1_000_003 + CODE_CACHE_SEED)
    codes, text_ids = [], []
    with torch.no_grad():
        for start in range(0, size, chunk):
            batch = world.sample(min(chunk, size - start), generator)
            small = model.config.gpt.codebook_size <= 2 ** 15
            codes.append(model.codes_of(to_unit(batch[0])).to(torch.int16 if small else torch.int32))
            text_ids.append(prompt_ids(model.tokenizer, list(batch.captions), model.config.gpt))
    cache = {"codes": torch.cat(codes).contiguous(), "text_ids": torch.cat(text_ids).contiguous()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file(cache, str(tmp))
    tmp.replace(path)
    return cache


def loss_fn(model, batch):
    if "codes" in batch:
        codes = batch["codes"]
    else:
        with torch.no_grad():
            codes = _unwrap(model).codes_of(to_unit(batch["images"]))
    logits = model(batch["text_ids"], codes)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), codes.reshape(-1)), {}


def make_eval_fn(batches: dict[str, tuple[torch.Tensor, torch.Tensor]]):
    @torch.no_grad()
    def eval_fn(model) -> dict[str, float]:
        model = _unwrap(model).eval()
        device = model.device
        out = {}
        for name, (images, text_ids) in batches.items():
            codes = model.codes_of(to_unit(images).to(device))
            logits = model(text_ids.to(device), codes)
            out[f"{name}_loss"] = float(F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                                        codes.reshape(-1)))
        return out
    return eval_fn


def train_text2codes(out_dir: str | Path = RECIPE_TRAIN.out_dir, *, vq: str | Path, steps: int = RECIPE_TRAIN.max_steps,
                     batch_size: int = RECIPE_TRAIN.batch_size, lr: float = RECIPE_TRAIN.lr, seed: int = 0,
                     resume: bool = False, config: TokenGPTConfig | None = None, tokenizer: str | Path | None = None,
                     code_cache: int = 0, fashion=None, progress: bool = True, command: str | None = None,
                     lora: LoraOptions | None = None, init_from: str | Path | None = None,
                     **train_options: Any) -> dict:
    """Train a ``TextToCodes`` GPT over the codes of the VQ-VAE folder ``vq`` and write
    ``out_dir/model`` (see the module docstring). Returns the numbers of training.json.

    ``lora``: train a LoRA adapter on the GPT of the trained model ``lora.base`` instead (its VQ-VAE,
    tokenizer and GPT settings; ``vq``, ``config`` and ``tokenizer`` are not used), on the same data;
    ``out_dir/model`` is then the adapter's folder.

    ``init_from``: fine-tune a trained text -> codes folder (or name): the run starts from its GPT's
    weights, with its tokenizer, its GPT architecture and (``vq`` None) its VQ-VAE, under a fresh
    optimizer and learning-rate schedule; ``config`` may differ from its GPT only in ``dropout`` and
    ``cond_drop``."""
    base = TextToCodes.from_pretrained(resolve_model(lora.base)) if lora else None
    init_folder = source = None
    if init_from is not None:
        expect(lora is None, "init_from", "none with lora (an adapter starts from its base)", str(init_from))
        expect(tokenizer is None, "tokenizer", "none with init_from (the run uses the folder's)", str(tokenizer))
        init_folder = resolve_model(init_from)
        source = TextToCodes.from_pretrained(init_folder)
    vq_folder = (resolve_model(lora.base) / VQ_DIR if lora else init_folder / VQ_DIR if source is not None and vq is None
                 else resolve_model(vq))
    vqvae = base.vqvae if lora else VQVAE.from_pretrained(vq_folder)
    if source is not None:
        _check_init_source(source, init_folder, vqvae, config)
        config = source.config.gpt.replace(**{k: getattr(config, k) for k in TUNABLE_FIELDS} if config else {})
    world = "video" if vqvae.config.dims == 3 else "image"  # a video VQ-VAE's GPT trains on the moving world
    train_world, held_world = worlds_of(world, fashion)
    size = input_size_of(train_world)
    expect(vqvae.config.input_size in (None, size), "vq", f"a VQ-VAE of {world}s of size {size}",
           vqvae.config.input_size)
    config = base.config.gpt if lora else config or (RECIPE_VIDEO_MODEL if world == "video" else RECIPE_MODEL)
    q = vqvae.config.quantizer
    config = config.replace(codebook_size=q.codebook_size, levels=q.levels, grid=vqvae.config.grid(size))
    fields = {**RECIPE_TRAIN.to_dict(), **train_options, "out_dir": str(out_dir), "max_steps": steps,
              "batch_size": batch_size, "lr": lr, "seed": seed}
    train_config = TrainConfig.from_dict(fields, where="train_options")
    out_dir = Path(out_dir)
    expect(isinstance(code_cache, int) and code_cache >= 0, "code_cache", "a number of examples >= 0", code_cache)
    run = {"model": config.to_dict(), "vq": str(vq_folder.resolve()), "tokenizer": str(tokenizer) if tokenizer else None,
           **({"code_cache": code_cache} if code_cache else {}), **({"lora": lora.to_dict()} if lora else {}),
           **({"init_from": str(init_folder.resolve())} if init_folder else {})}
    own_tokenizer = out_dir / TOKENIZER_NAME
    if resume:
        check_resume_settings(run_file(out_dir, "text2codes"), run, "the model, VQ-VAE and tokenizer",
                              configs={"model": TokenGPTConfig})
        text_tokenizer = base.tokenizer if lora else TextTokenizer.from_file(Path(tokenizer) if tokenizer else own_tokenizer)
    elif lora:
        text_tokenizer = base.tokenizer
    elif source is not None:
        text_tokenizer = source.tokenizer
    elif tokenizer:
        text_tokenizer = TextTokenizer.from_file(tokenizer)
    else:
        text_tokenizer = train_caption_tokenizer(config.text_vocab)
    expect(text_tokenizer.vocab_size <= config.text_vocab, "tokenizer", f"at most {config.text_vocab} tokens",
           text_tokenizer.vocab_size)

    fixed = {name: w.sample(256, seed_) for name, w, seed_ in
             (("held_out", held_world, HELD_OUT_SEED), ("seen", train_world, SEEN_SEED))}
    eval_fn = make_eval_fn({name: (b[0], prompt_ids(text_tokenizer, list(b.captions), config))
                            for name, b in fixed.items()})

    torch.manual_seed(train_config.seed)
    model = base if lora else TextToCodes(TextToCodesConfig(gpt=config, kind=world), text_tokenizer, vqvae)
    if source is not None and not resume:
        model.gpt.load_state_dict(source.gpt.state_dict())
    lora_record = attach_lora(model, lora, within=["gpt."]) if lora else None
    source, items, never = (("moving world", "clips", "held-out colour and direction pairs") if world == "video"
                            else ("captioned world", "renders", "held-out combinations"))
    if code_cache:
        cache = build_code_cache(out_dir / CODE_CACHE_NAME, train_world, model, code_cache, train_config.seed)
        batch_fn = make_cached_batch_fn(cache, train_config.batch_size, train_config.seed)
        data = (f"{source}, split train: {code_cache} {items} coded once by the VQ-VAE and drawn with "
                f"replacement ({never} never drawn)")
    else:
        batch_fn = make_batch_fn(train_world, text_tokenizer, config, train_config.batch_size, train_config.seed)
        data = f"{source}, split train (streamed; {never} never drawn), coded by the VQ-VAE"
    trainer = Trainer(model, train_config, loss_fn, batch_fn=batch_fn,
                      eval_fn=eval_fn, resume=resume, progress=progress,
                      **adapter_trainer_options(lora))
    if trainer.is_main and not tokenizer and not resume and not lora:
        text_tokenizer.save(out_dir)
    summary, seconds = trainer.train_run(run_file(out_dir, "text2codes"), run)
    if not trainer.is_main:
        return summary
    final = trainer.final_model(lambda folder: reload_adapter(model, folder)) if lora else trainer.eval_model.eval()
    training = {
        "command": command or f"train_text2codes({str(out_dir)!r}, vq={str(vq)!r}, steps={steps}, "
                              f"batch_size={batch_size}, lr={lr}, seed={seed})",
        "data": data,
        **trainer.run_record(seconds),
        "parameters": {"gpt": count_parameters(final.gpt), "vq-vae (frozen)": count_parameters(final.vqvae)},
        "vq": str(vq if vq is not None else vq_folder),
        "tokenizer": {"vocab_size": text_tokenizer.vocab_size,
                      "source": str(tokenizer) if tokenizer else f"the tokenizer of {init_from}" if source is not None
                      else "trained by this run"},
        "init_from": init_record(init_folder) if init_folder else None,
        "eval": {k: v for k, v in summary.items() if k.endswith("_loss")},
        "final_train": {k: summary[k] for k in ("loss",) if k in summary},
        "model": final.config.to_dict(),
        **({"lora": lora_record, "parameters": lora_record["trainable_parameters"]} if lora else {}),
    }
    card = ((lambda tmp: adapter_card(training, f"text-to-{world}", "clips" if world == "video" else "renders"))
            if lora else (lambda tmp: model_card(training, tmp)))
    folder = publish_model(out_dir / MODEL_DIR, final, training, card,
                           save=adapter_save(final, lora),
                           vocabulary=clip_caption_corpus("train") if world == "video" else caption_corpus("train"))
    return {**training, "model_dir": str(folder)}


# What a fine-tuning run (``init_from``) may change of the GPT it starts from.
TUNABLE_FIELDS = ("dropout", "cond_drop")
# What it may not: the GPT's shape (its grid and codebook follow the VQ-VAE, checked on its own).
ARCHITECTURE_FIELDS = ("width", "depth", "heads", "mlp_ratio", "text_length", "text_vocab", "positions")


def _check_init_source(source: TextToCodes, folder: Path, vqvae: VQVAE, config: TokenGPTConfig | None) -> None:
    """A fine-tuning run starts from ``source`` only if it writes the codes of the run's VQ-VAE (same
    weights, up to float16 storage) with the run's GPT architecture (``config``, when given)."""
    expect(same_weights(vqvae, source.vqvae), "init_from", f"a model over the run's VQ-VAE (--vq), the weights in {folder / VQ_DIR}",
           "other weights")
    check_init_architecture(source.config.gpt, config, folder, ARCHITECTURE_FIELDS)


def model_card(info: dict, folder: Path | None = None) -> str:
    """MODEL_CARD.md of a text -> codes GPT from its training.json (and the folder's evaluation.json,
    written by ``benchmarks/text_to_image_gpt.py`` or ``benchmarks/text_to_video.py``, when present)."""
    config = TextToCodesConfig.from_dict(info["model"])
    g, video = config.gpt, config.kind == "video"
    summary = (f"A token GPT on the shared backbone ({g.depth} causal blocks, width {g.width}, {g.heads} heads, "
               f"{g.positions} positions) that writes the {'x'.join(map(str, g.grid))} code grid of the VQ-VAE in "
               f"`vq/` ({g.codebook_size} codes) after a prompt of up to {g.text_length} BPE tokens; "
               f"trained with the prompt dropped {100 * g.cond_drop:.0f} % of the time for classifier-free guidance.")
    task, count, verb, unit = (("text-to-video", "num_videos_per_prompt", "video", "clips") if video else
                               ("text-to-image", "num_images_per_prompt", "image", "images"))
    usage = (f"`multimodal.pipeline(\"{task}\", model=this_folder)(prompt, {count}=4, "
             "generator=torch.Generator().manual_seed(0))`, with the sampling defaults of `config.json` "
             "(override with `guidance_scale`, `temperature`, `top_k`, `top_p`); command line: "
             f"`multimodal generate {verb} \"...\" --model this_folder`.")
    rows = [(name.replace("_", " ").replace(" loss", ""), f"{loss:.3f}") for name, loss in info.get("eval", {}).items()]
    lines = [*markdown_table((f"teacher-forced loss (256 {'clips' if video else 'renders'})", "nats per code"), rows,
                             "lr"), ""]
    judged = Path(folder) / "evaluation.json" if folder is not None else None
    if video and judged is not None and judged.is_file():
        lines += _clip_evaluation(read_json(judged))
    elif judged is not None and judged.is_file():
        ev = read_json(judged)
        r = ev["row"]
        pct = lambda d, k: f"{100 * d[k]:.1f} %"  # noqa: E731
        both = "crisp_judge_ceiling" in ev  # also scored by a judge trained on crisp renders only

        def cells(name, judged, crisp):
            return (name, pct(judged, "seen_accuracy"), pct(judged, "held_out_accuracy"),
                    *((pct(crisp, "seen_accuracy"), pct(crisp, "held_out_accuracy")) if both else ()))

        lines += [f"Prompt accuracy under the world judge ({ev['judge']}), {ev['images_per_prompt']} images per prompt "
                  f"of `world.evaluation_prompts()`, guidance {r['guidance_scale']}, temperature {r['temperature']}, "
                  f"top-p {r['top_p']} (`{ev['command']}`)"
                  + (f"; beside it the same judge trained on crisp renders only ({ev['crisp_judge']})" if both else "")
                  + ":", "",
                  *markdown_table(("", "seen", "held out", *(("crisp judge: seen", "held out") if both else ())), [
                      cells("this model", r, r.get("crisp_judge")),
                      cells("the judge on real renders", ev["judge_ceiling"], ev.get("crisp_judge_ceiling")),
                      cells("real renders through the VQ-VAE", ev["vq_ceiling"], ev.get("crisp_vq_ceiling"))],
                      "lrr" + ("rr" if both else "")), "",
                  f"Fréchet distance (judge features) {r['frechet']:.2f}; {r['seconds_per_image']:.4f} s per image on "
                  f"the CPU (codes and decoding, all prompts in one batch); codebook usage of the written codes "
                  f"{100 * r['codebook_usage']:.1f} %.", ""]
    evaluation = "\n".join(lines)
    title = ("Text -> video codes GPT for the moving world" if video
             else "Text -> image codes GPT for the captioned world")
    return build_model_card(title, summary, info, usage=usage,
                            details=[*([init_text(info["init_from"], info["steps"]).removeprefix("- ")]
                                       if info.get("init_from") else []),
                                     f"Tokenizer: byte-level BPE of {info['tokenizer']['vocab_size']} tokens "
                                     f"({info['tokenizer']['source']})."],
                            unit=unit, evaluation=evaluation, notes=card_notes(folder))


def _clip_evaluation(ev: dict) -> list[str]:
    """The card's lines on a video GPT's evaluation.json (``benchmarks/text_to_video.py``)."""
    r, s = ev["row"], ev["setting"]
    pct = lambda d, k: f"{100 * d[k]:.1f} %" if k in d else ""  # noqa: E731
    keys = ("seen_accuracy", "held_out_colour_accuracy", "held_out_direction_accuracy", "direction_accuracy",
            "consistency")
    rows = [("this model", *(pct(r, k) for k in keys))]
    rows += [(name, *(pct(c, k) for k in keys)) for name, c in ev["ceilings"].items() if "image world" not in name]
    return [f"Prompt accuracy under the clip judge ({ev['judge']}), {ev['videos_per_prompt']} clips per prompt of "
            f"`world_video.clip_evaluation_prompts()`, guidance {s['guidance_scale']}, temperature "
            f"{s['temperature']}, top-p {s['top_p']} (`{ev['command']}`). A clip is right when its object, colour, "
            f"background and direction all are:", "",
            *markdown_table(("", "seen", "held-out colour", "held-out direction", "direction right", "consistent"),
                            rows, "lrrrrr"), "",
            f"{r['seconds_per_clip']:.4f} s per clip on the CPU (codes and decoding); codebook usage of the written "
            f"codes {100 * r['codebook_usage']:.1f} %; the VQ-VAE's PSNR on the real clips {ev['vq']['psnr']:.2f} dB.",
            ""]


SHIPPED_FILES = (TRAINING_NAME, "vocabulary.txt")  # run files a shipped folder keeps


def ship_text2codes(source: str | Path, dest: str | Path, vq: str | Path, *, dtype: torch.dtype | None = torch.float16,
                    **sampling: Any) -> Path:
    """Write the checkpoint folder ``dest`` from the trained folder ``source``: the GPT (in ``dtype``),
    its tokenizer and training.json, ``vq/`` a copy of the checkpoint folder ``vq`` (the VQ-VAE the GPT
    was trained on, as shipped: same architecture, weights equal up to float16 rounding) and the
    sampling defaults ``sampling`` (``guidance_scale``, ``temperature``, ``top_k``, ``top_p``) in
    config.json. ``dest``'s card_notes.md is kept; the card is rewritten (without an evaluation:
    ``python -m benchmarks.text_to_image_gpt --gpt dest --write-checkpoint`` adds it)."""
    source, dest, vq = Path(source), Path(dest), Path(vq)
    model = TextToCodes.from_pretrained(source)
    shipped = VQVAE.from_pretrained(vq)
    expect(shipped.config == model.vqvae.config, "vq", f"the VQ-VAE of {source} ({source / 'vq'})", str(vq))
    expect(same_weights(model.vqvae, shipped), "vq", f"the weights of {source / 'vq'} (up to float16 rounding)", f"other weights in {vq}")
    unknown = set(sampling) - {"guidance_scale", "temperature", "top_k", "top_p"}
    expect(not unknown, "sampling", "guidance_scale, temperature, top_k or top_p", ", ".join(sorted(unknown)))
    model.config = model.config.replace(**sampling)
    model.vqvae = shipped
    tmp = fresh_tmp_dir(dest)
    model.save_pretrained(tmp, dtype=dtype)
    shutil.rmtree(tmp / VQ_DIR)
    shutil.copytree(vq, tmp / VQ_DIR)
    for name, where in [*((n, source) for n in SHIPPED_FILES), (NOTES_NAME, dest)]:
        if (where / name).is_file():
            shutil.copyfile(where / name, tmp / name)
    (tmp / CARD_NAME).write_text(model_card(read_training(tmp), tmp))
    publish_dir(tmp, dest)
    return dest


# --------------------------------------------------------------------------------------------- CLI
def add_train_text2codes_arguments(parser: argparse.ArgumentParser, world: str = "image") -> argparse.ArgumentParser:
    """Arguments of ``multimodal train text2codes`` (``world="video"``: ``train text2video``, whose
    defaults are the video recipe): the VQ-VAE, tokenizer, GPT and every TrainConfig flag."""
    video = world == "video"
    m, train_recipe = (RECIPE_VIDEO_MODEL, RECIPE_VIDEO_TRAIN) if video else (RECIPE_MODEL, RECIPE_TRAIN)
    cache = RECIPE_VIDEO_CODE_CACHE if video else RECIPE_CODE_CACHE
    parser.add_argument("--vq", default=None, help=f"the {'video ' if video else ''}VQ-VAE folder or name whose "
                                                   f"codes the GPT writes (required, but for `train lora`: the base's)")
    parser.add_argument("--tokenizer", default=None, help="a tokenizer.json to use instead of training one")
    parser.add_argument("--init-from", default=None, metavar="MODEL_DIR",
                        help=f"fine-tune: start from the GPT weights, tokenizer and VQ-VAE of a trained folder or name "
                             f"(e.g. text2{'video' if video else 'image'}-gpt), with its GPT architecture, a fresh "
                             f"optimizer and this command's training settings")
    model = parser.add_argument_group("GPT")
    for name, default in (("width", m.width), ("depth", m.depth), ("heads", m.heads), ("text-length", m.text_length),
                          ("text-vocab", m.text_vocab)):
        model.add_argument(f"--{name}", type=int, default=default, help=f"(default {default})")
    model.add_argument("--positions", choices=("learned", "rotary"), default=m.positions,
                       help=f"(default {m.positions})")
    model.add_argument("--dropout", type=float, default=m.dropout, help=f"(default {m.dropout})")
    model.add_argument("--cond-drop", type=float, default=m.cond_drop,
                       help=f"probability of the empty prompt in training (default {m.cond_drop})")
    parser.add_argument("--code-cache", type=int, default=cache, metavar="N",
                        help=f"encode N training {'clips' if video else 'renders'} once and draw batches from their "
                             f"codes (default {cache}; 0: render and encode every batch)")
    add_train_args(parser, train_recipe)
    parser.set_defaults(_command_parser=parser, world=world)
    return parser


def add_train_text2video_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``multimodal train text2video``: ``train text2codes``'s, with the video recipe as defaults."""
    return add_train_text2codes_arguments(parser, "video")


def _config_for_init(init_from: str, asked: TokenGPTConfig, recipe: TokenGPTConfig) -> TokenGPTConfig:
    """With ``--init-from``: the folder's GPT, with the command's dropout and prompt dropping; a GPT flag
    set to other than its default must agree with the folder."""
    return init_config(init_from, "text -> codes", asked, recipe, ARCHITECTURE_FIELDS, TUNABLE_FIELDS)


def run_train_text2codes(args: argparse.Namespace) -> dict:
    """``multimodal train text2codes`` (and ``text2video``): train, write ``<out-dir>/model`` and print where."""
    world = getattr(args, "world", "image")
    name = "text2video" if world == "video" else "text2codes"
    lora = getattr(args, "lora", None)  # set by `multimodal train lora`: adapt the base, its own settings
    init_from = getattr(args, "init_from", None)
    if lora is None and args.vq is None and init_from is None:
        raise InputError("--vq: expected the VQ-VAE folder or name whose codes the GPT writes, found none")
    vq_folder = (resolve_model(lora.base) / VQ_DIR if lora else resolve_model(init_from) / VQ_DIR if args.vq is None
                 else resolve_model(args.vq))
    dims = read_json(vq_folder / "config.json").get("dims", 2)
    expect(dims == (3 if world == "video" else 2), "--vq", f"a VQ-VAE of {world}s for `multimodal train {name}`",
           f"one of {'videos' if dims == 3 else 'images or audio'} (dims {dims}); "
           f"`multimodal train {'text2video' if dims == 3 else 'text2codes'}` trains its GPT")
    recipe = RECIPE_VIDEO_MODEL if world == "video" else RECIPE_MODEL
    config = recipe.replace(width=args.width, depth=args.depth, heads=args.heads, text_length=args.text_length,
                            text_vocab=args.text_vocab, positions=args.positions, dropout=args.dropout,
                            cond_drop=args.cond_drop)
    config = TokenGPTConfig.from_dict(config.to_dict())
    if init_from is not None:
        config = _config_for_init(init_from, config, recipe)
    fields = train_config_from_args(args).to_dict()
    named = {k: fields.pop(k) for k in ("out_dir", "max_steps", "batch_size", "lr", "seed")}
    result = train_text2codes(named["out_dir"], vq=args.vq, steps=named["max_steps"], batch_size=named["batch_size"],
                              lr=named["lr"], seed=named["seed"], resume=args.resume, config=config,
                              tokenizer=args.tokenizer, code_cache=args.code_cache, progress=args.progress,
                              command=command_line(args, "multimodal train lora" if lora else f"multimodal train {name}"),
                              lora=lora, init_from=init_from, **fields)
    if "model_dir" in result:
        print(", ".join(f"{k} {v:.3f}" for k, v in result["eval"].items()))
        print(f"model: {result['model_dir']}")
    return result
