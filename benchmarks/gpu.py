"""Model FLOPs utilisation (MFU) on one CUDA GPU: our models against the reference libraries, in one run.

The goal is MegaScale's 55 % MFU (Jiang et al., 2024) on one H200: the model FLOPs of a step over its
time, divided by the GPU's dense bf16 peak. Each case times ours and the reference library on the
same shapes, interleaved (``benchmarks.common.interleaved``, medians), warm-up steps excluded:

- **dit**: a training step (forward, MSE loss, backward, AdamW) of DiT-XL/2 (256 px images: 32x32x4
  latents, patch 2, width 1152, depth 28, 16 heads; 256 tokens, 16 classes), ours against diffusers'
  ``DiTTransformer2DModel`` with the same weights (``benchmarks.text_to_image.dit_pair``), batch 64;
- **gpt**: a training step (next-token cross-entropy) of a causal GPT of width 1152, depth 28, 16
  heads, 1024 tokens and GPT-2's vocabulary (50257; learned positions, untied head), our
  ``TokenGPT`` (16 prompt tokens + 1008 codes) against transformers' ``GPT2LMHeadModel`` (tied
  embeddings), batch 16;
- **whisper**: batch transcription (``transcribe_batch``, beam 5, batch 16) of 64 files by Whisper
  tiny.en in float16, against faster-whisper (float16 on CUDA, one file at a time: it batches the
  pieces of one recording, not files). The files are the speech evaluation set's
  (``python -m multimodal.data.speech_eval``) when built, else sentences spoken by espeak-ng. Its
  FLOPs are counted by hooks on our encoder and decoder calls (one untimed run; beams, fallbacks and
  the KV cache's lengths as they happen) and used for faster-whisper's row too (the same model on
  the same audio; an estimate for it);
- **vit**: ViT-B/16 at 224 px (patch 16, width 768, depth 12, 12 heads, 1000 classes; 197 tokens)
  against timm's ``vit_base_patch16_224`` (random weights): inference, batch 256, and a training step.

On CUDA: bf16 autocast over float32 weights (Whisper: float16 weights, as faster-whisper's
``compute_type``), TF32 matmuls, SDPA restricted to the flash and memory-efficient kernels (Whisper:
SDPA's own choice), AdamW (fused), ``--compile`` to ``torch.compile`` ours and the reference
(not Whisper's decoding). ``step GiB`` is ``torch.cuda.max_memory_allocated`` during one step less
what was allocated before it (both models' weights and optimizer states stay resident).

**FLOPs** (model FLOPs, one formula: ``transformer_flops``). A forward pass of one sequence of n
tokens through D blocks of width W with an MLP of hidden size F costs::

    2 n D (4 W^2 + 2 W F [+ 2 W^2 with cross-attention]) + 4 D n (keys + context keys) W + sum_i 2 n_i P_i

that is 2 FLOPs (a multiply and an add) per weight of every matmul each token passes through (q, k,
v and output projections, the MLP's two; embedding tables excluded), QK^T and AV over the full n x
keys score matrices (causal attention counted in full, not halved), and the matmuls outside the
blocks, n_i tokens through P_i weights each: patch embedding, output layer or vocabulary head, and
per-sample conditioning MLPs (DiT's timestep MLP and adaLN projections, counted once per image;
the copies that diffusers' layout keeps in every block are not). A training step counts 3 x forward
(backward = 2 x forward). Biases, norms, activations, softmax, the loss and the optimizer are not
counted. Achieved TFLOP/s = FLOPs per step / seconds per step; MFU = achieved / peak, the peak
(dense bf16 / fp16) looked up from ``torch.cuda.get_device_name()`` (H100 SXM and H200: 989
TFLOP/s) or given by ``--peak-tflops``. ``tests/test_gpu_benchmark.py`` checks the formula against
``torch.utils.flop_counter.FlopCounterMode``.

``--dry-run`` runs every case and reference on the CPU at tiny sizes (width 64, depth 2, float32,
2 timed steps; Whisper: tiny.en on 2 files), MFU null unless ``--peak-tflops``; it writes only to
``--out``.

    python -m benchmarks.gpu                          # writes results/gpu.json (without CUDA: nothing)
    python -m benchmarks.gpu --compile --cases dit gpt --out /tmp/gpu.json
    python -m benchmarks.gpu --dry-run                # a CPU smoke run of every code path
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from multimodal.models.dit import DiTConfig
from multimodal.models.token_gpt import TokenGPT, TokenGPTConfig
from multimodal.models.vit import ViT, ViTConfig

from .common import interleaved, markdown_table, median, write_results
from .cuda import XL2, synchronized
from .text_to_image import dit_pair
from .train_step import training_step

CASES = ("dit", "gpt", "whisper", "vit")
GOAL_MFU = 0.55  # MegaScale (Jiang et al., 2024), here on one H200
FORMULA = ("forward FLOPs per sequence of n tokens = 2 n D (4 W^2 + 2 W F [+ 2 W^2 cross-attention]) "
           "+ 4 D n (keys + context keys) W + sum_i 2 n_i P_i (matmuls outside the blocks: patch embedding, "
           "head, per-sample conditioning; embedding tables excluded); causal attention counted in full; "
           "training = 3 x forward; MFU = FLOPs per step / seconds per step / peak")
# Dense bf16 / fp16 tensor-core peaks (FLOP/s, without sparsity), by a part of the device name; first match wins.
PEAK_FLOPS = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12), ("L40S", 362e12),
              ("L4", 121e12), ("A10G", 70e12), ("A10", 125e12))
FULL = {"dit": dict(batch=64), "gpt": dict(width=1152, depth=28, heads=16, seq=1024, vocab=50257, batch=16),
        "whisper": dict(files=64, batch=16),
        "vit": dict(config=dict(), timm=dict(), batch=256)}
DRY = {"dit": dict(width=64, depth=2, heads=4, input_size=8, batch=4),
       "gpt": dict(width=64, depth=2, heads=4, seq=64, vocab=512, batch=2),
       "whisper": dict(files=2, batch=2),
       "vit": dict(config=dict(image_size=32, patch_size=8, width=64, depth=2, heads=4, num_classes=10),
                   timm=dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10),
                   batch=4)}
GPT_PROMPT = 16  # of TokenGPT's tokens, the prompt's; the rest (with BOS) are codes
BEAM = 5


# ------------------------------------------------------------------------------------------ FLOPs
def transformer_flops(*, width: int, depth: int, tokens: int, mlp_hidden: int, keys: int | None = None,
                      cross_keys: int = 0, linear: tuple[tuple[int, int], ...] | list = (),
                      training: bool = False) -> int:
    """Model FLOPs of one sequence (the module docstring's formula): ``tokens`` through ``depth``
    blocks of ``width`` with an MLP of ``mlp_hidden``, attending to ``keys`` positions (default
    ``tokens``; a KV cache's length when decoding) and, when ``cross_keys`` > 0, cross-attending to a
    context of that many tokens (its query and output projections counted here, its key and value
    projections in ``linear``); ``linear``: (tokens, weight parameters) of each matmul outside the
    blocks. ``training``: 3 x forward."""
    keys = tokens if keys is None else keys
    per_token = depth * (4 * width * width + 2 * width * mlp_hidden + (2 * width * width if cross_keys else 0))
    flops = 2 * tokens * per_token + 4 * depth * tokens * (keys + cross_keys) * width
    flops += sum(2 * n * params for n, params in linear)
    return 3 * flops if training else flops


def dit_flops(config: DiTConfig, training: bool = False) -> int:
    """Per image: the blocks over the patch tokens, patch embedding and final projection per token,
    the timestep MLP and the adaLN projections (blocks' and final layer's) once per image."""
    W, p = config.width, config.patch_size
    n = config.grid[0] * config.grid[1]
    conditioning = 256 * W + W * W + config.depth * W * 6 * W + W * 2 * W
    return transformer_flops(width=W, depth=config.depth, tokens=n, mlp_hidden=int(W * config.mlp_ratio),
                             linear=[(n, p * p * config.in_channels * W), (n, W * p * p * config.out_channels),
                                     (1, conditioning)], training=training)


def gpt_flops(width: int, depth: int, seq: int, vocab: int, training: bool = False) -> int:
    """Per sequence of ``seq`` tokens: the blocks (4 x width MLP) and the vocabulary head at every token."""
    return transformer_flops(width=width, depth=depth, tokens=seq, mlp_hidden=4 * width,
                             linear=[(seq, width * vocab)], training=training)


def vit_flops(config: ViTConfig, training: bool = False) -> int:
    """Per image: patch embedding per patch, the blocks over the patches and the class token, the
    classifier once."""
    W, p = config.width, config.patch_size
    n = config.grid[0] * config.grid[1]
    return transformer_flops(width=W, depth=config.depth, tokens=n + config.num_prefix_tokens,
                             mlp_hidden=int(W * config.mlp_ratio),
                             linear=[(n, p * p * config.in_channels * W), (1, W * config.num_classes)],
                             training=training)


class WhisperWork:
    """While active (``with``), adds up the FLOPs of every encoder and decoder call of a Whisper by
    ``transformer_flops``: the encoder's two convolutions as matmuls (kernel 3) and its blocks; per
    decoder call, its new tokens against the KV cache's length and the audio, the vocabulary
    projection at the positions asked for, and the audio's cross-attention keys and values when
    they are computed (the first call of a cache)."""

    def __init__(self, model):
        self.model, self.flops, self._hooks = model, 0, []

    def _encoder(self, module, args):
        c = self.model.config
        B, mels, frames = args[0].shape
        W, n = c.n_audio_state, (frames + 1) // 2
        self.flops += B * transformer_flops(width=W, depth=c.n_audio_layer, tokens=n, mlp_hidden=4 * W,
                                            linear=[(frames, 3 * mels * W), (n, 3 * W * W)])

    def _decoder(self, module, args):
        c = self.model.config
        tokens, features, cache, positions = (list(args) + [None] * 4)[:4]
        B, L = tokens.shape
        start = cache.length if cache is not None else 0
        W = c.n_text_state
        head = [(len(positions) if positions else L, W * c.n_vocab)]
        if features is not None:  # the audio's keys and values in every block, computed by this call
            audio = features.shape[1]
            head.append((audio, c.n_text_layer * 2 * W * c.n_audio_state))
        else:
            audio = cache.cross[0][0].shape[2]
        self.flops += B * transformer_flops(width=W, depth=c.n_text_layer, tokens=L, keys=start + L,
                                            mlp_hidden=4 * W, cross_keys=audio, linear=head)

    def __enter__(self) -> "WhisperWork":
        self._hooks = [self.model.encoder.register_forward_pre_hook(self._encoder),
                       self.model.decoder.register_forward_pre_hook(self._decoder)]
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()


def peak_flops(device_name: str | None) -> float | None:
    """Dense bf16 FLOP/s of a GPU by its name (None for an unknown one or the CPU)."""
    if device_name is None:
        return None
    return next((peak for part, peak in PEAK_FLOPS if part.lower() in device_name.lower()), None)


# ---------------------------------------------------------------------------------------- running
@dataclass
class Setup:
    device: str
    amp: bool  # bf16 autocast
    compile: bool
    peak: float | None  # FLOP/s

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def compiled(self, module):
        return torch.compile(module) if self.compile else module

    def attention(self):
        """SDPA restricted to the flash and memory-efficient kernels on CUDA; the default on the CPU."""
        if not self.cuda:
            return contextlib.nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel
        return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])

    def step(self, fn: Callable, attention: bool = True) -> Callable:
        """``fn`` under the attention setting, synchronised on CUDA so that its time is the GPU's."""
        def run():
            with self.attention() if attention else contextlib.nullcontext():
                return fn()
        return synchronized(run) if self.cuda else run

    def train_step(self, loss_fn: Callable, module: torch.nn.Module) -> Callable:
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, fused=self.cuda)
        return self.step(training_step(loss_fn, optimizer, self.amp, self.device))

    def infer_step(self, fn: Callable) -> Callable:
        def run():
            with torch.inference_mode(), torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.amp):
                return fn()
        return self.step(run)

    def measured(self, fn: Callable):
        """(output, GiB) of one call: on CUDA the peak allocated during it above what was allocated before."""
        if not self.cuda:
            return fn(), None
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        return out, (torch.cuda.max_memory_allocated() - before) / 2 ** 30


def reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"[:300]


def compare(setup: Setup, case: str, task: str, steps: dict[str, Callable], *, flops: int | None, items: int,
            unit: str, batch: int, repeats: int, warmup: int, skipped: dict, count=None) -> tuple[list[dict], dict]:
    """Time ``steps`` (``"ours"`` first, then the reference, if it built) interleaved -> (rows, the
    first output of each). The first call of each is untimed and measures memory; a reference whose
    first call fails is dropped, its reason in ``skipped``. ``count``: a context-manager factory
    entered around our first call whose ``flops`` then gives ``flops``."""
    outputs, memory = {}, {}
    for name in list(steps):
        try:
            with (count() if count is not None and name == "ours" else contextlib.nullcontext()) as counter:
                outputs[name], memory[name] = setup.measured(steps[name])
            if counter is not None:
                flops = counter.flops
        except Exception as error:
            if name == "ours":
                raise
            skipped[f"{case} {task}: {name}"] = reason(error)
            print(f"  {name}: skipped ({skipped[f'{case} {task}: {name}']})", flush=True)
            del steps[name]
    times = interleaved(steps, repeats=repeats, warmup=max(warmup - 1, 0))
    rows = []
    for name, runs in times.items():
        seconds = median(runs)
        achieved = flops / seconds
        rows.append({"case": case, "task": task, "model": name, "role": "ours" if name == "ours" else "reference",
                     "batch": batch, "unit": unit, "items_per_step": items, "seconds_per_step": seconds,
                     "items_per_s": items / seconds, "flops_per_step": flops, "achieved_tflops": achieved / 1e12,
                     "mfu": achieved / setup.peak if setup.peak else None, "step_memory_gib": memory[name],
                     "runs_s": runs})
    if len(rows) == 2:
        rows[0]["speed_ours_over_reference"] = rows[1]["seconds_per_step"] / rows[0]["seconds_per_step"]
    for r in rows:
        print(f"  {task} {r['model']}: {r['seconds_per_step']:.4g} s/step, {r['items_per_s']:.4g} {unit}/s, "
              f"{r['achieved_tflops']:.4g} TFLOP/s" + (f", MFU {100 * r['mfu']:.1f} %" if r["mfu"] else ""),
              flush=True)
    return rows, outputs


# ------------------------------------------------------------------------------------------ cases
def dit_case(setup: Setup, sizes: dict, repeats: int, warmup: int, skipped: dict) -> tuple[list[dict], dict]:
    config = DiTConfig.preset(XL2, **{k: v for k, v in sizes.items() if k != "batch"})
    batch = sizes["batch"]
    torch.manual_seed(0)
    ours, theirs, x, t, y = dit_pair(config, batch, setup.device)
    target = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(setup.device)
    f_ours, f_theirs = setup.compiled(ours.train()), setup.compiled(theirs.train())
    steps = {"ours": setup.train_step(lambda: F.mse_loss(f_ours(x, t, class_labels=y).float(), target), ours),
             "diffusers DiTTransformer2DModel": setup.train_step(
                 lambda: F.mse_loss(f_theirs(x, timestep=t, class_labels=y).sample.float(), target), theirs)}
    flops = batch * dit_flops(ours.config, training=True)
    rows, _ = compare(setup, "dit", "training", steps, flops=flops, items=batch, unit="images", batch=batch,
                      repeats=repeats, warmup=warmup, skipped=skipped)
    c = ours.config
    return rows, {"width": c.width, "depth": c.depth, "heads": c.heads, "patch_size": c.patch_size,
                  "latent": [c.in_channels, *c.input_size], "tokens": c.grid[0] * c.grid[1], "batch": batch,
                  "flops_per_image_training": flops // batch}


def gpt_models(sizes: dict, device: str):
    """Our TokenGPT and transformers' GPT2LMHeadModel (if it builds, else the reason) of ``sizes``."""
    W, D, H, S, V = (sizes[k] for k in ("width", "depth", "heads", "seq", "vocab"))
    torch.manual_seed(0)
    ours = TokenGPT(TokenGPTConfig(codebook_size=V, grid=(S - GPT_PROMPT,), text_vocab=V, text_length=GPT_PROMPT,
                                   width=W, depth=D, heads=H, cond_drop=0.0)).to(device)
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
        config = GPT2Config(vocab_size=V, n_positions=S, n_embd=W, n_layer=D, n_head=H, resid_pdrop=0.0,
                            embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False, bos_token_id=V - 1, eos_token_id=V - 1)
        theirs = GPT2LMHeadModel(config).to(device)
        theirs.loss_type = "ForCausalLM"  # its default, named (else it warns that none is set)
    except Exception as error:  # transformers missing or failing: ours alone
        theirs = reason(error)
    return ours, theirs


def gpt_case(setup: Setup, sizes: dict, repeats: int, warmup: int, skipped: dict) -> tuple[list[dict], dict]:
    S, V, batch = sizes["seq"], sizes["vocab"], sizes["batch"]
    ours, theirs = gpt_models(sizes, setup.device)
    g = torch.Generator().manual_seed(0)
    text_ids = torch.randint(0, V, (batch, GPT_PROMPT), generator=g).to(setup.device)
    codes = torch.randint(0, V, (batch, S - GPT_PROMPT), generator=g).to(setup.device)
    ids = torch.randint(0, V, (batch, S), generator=g).to(setup.device)
    f_ours = setup.compiled(ours.train())

    def our_loss():
        return F.cross_entropy(f_ours(text_ids, codes).float().reshape(-1, V), codes.reshape(-1))

    steps = {"ours": setup.train_step(our_loss, ours)}
    if isinstance(theirs, str):
        skipped["gpt training: transformers GPT2LMHeadModel"] = theirs
    else:
        f_theirs = setup.compiled(theirs.train())
        steps["transformers GPT2LMHeadModel"] = setup.train_step(lambda: f_theirs(ids, labels=ids).loss, theirs)
    flops = batch * gpt_flops(sizes["width"], sizes["depth"], S, V, training=True)
    rows, _ = compare(setup, "gpt", "training", steps, flops=flops, items=batch, unit="sequences", batch=batch,
                      repeats=repeats, warmup=warmup, skipped=skipped)
    return rows, {**{k: sizes[k] for k in ("width", "depth", "heads", "seq", "vocab")}, "batch": batch,
                  "flops_per_sequence_training": flops // batch}


def vit_case(setup: Setup, sizes: dict, repeats: int, warmup: int, skipped: dict) -> tuple[list[dict], dict]:
    import timm

    config, batch = ViTConfig(**sizes["config"]), sizes["batch"]
    torch.manual_seed(0)
    ours = ViT(config).to(setup.device)
    models = {"ours": ours}
    try:
        models["timm vit_base_patch16_224"] = timm.create_model("vit_base_patch16_224", pretrained=False,
                                                                **sizes["timm"]).to(setup.device)
    except Exception as error:
        skipped["vit: timm vit_base_patch16_224"] = reason(error)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, config.in_channels, *config.image_size, generator=g).to(setup.device)
    labels = torch.randint(0, config.num_classes, (batch,), generator=g).to(setup.device)
    rows = []
    for task, training in (("inference", False), ("training", True)):
        steps = {}
        for name, model in models.items():
            forward = setup.compiled(model.train(training))
            if training:
                steps[name] = setup.train_step(lambda forward=forward: F.cross_entropy(forward(images), labels), model)
            else:
                steps[name] = setup.infer_step(lambda forward=forward: forward(images))
        flops = batch * vit_flops(config, training=training)
        rows += compare(setup, "vit", task, steps, flops=flops, items=batch, unit="images", batch=batch,
                        repeats=repeats, warmup=warmup, skipped=skipped)[0]
    return rows, {"width": config.width, "depth": config.depth, "heads": config.heads,
                  "patch_size": config.patch_size, "image_size": list(config.image_size),
                  "tokens": config.grid[0] * config.grid[1] + config.num_prefix_tokens, "batch": batch,
                  "flops_per_image_inference": vit_flops(config)}


def speech_clips(n: int) -> tuple[list, list[str], str]:
    """``n`` utterances (16 kHz arrays), their texts and where they come from: the speech evaluation
    set when it is built, else sentences of its script spoken by espeak-ng (repeated to make ``n``)."""
    from multimodal.data import speech_eval
    from multimodal.media.audio import load_audio

    from .asr import eval_entries

    if (speech_eval.default_dir() / "manifest.jsonl").is_file():
        _, entries = eval_entries(None, n)
        clips = [(load_audio(e["audio"]), e["text"]) for e in entries]
        source = "the speech evaluation set"
    else:
        espeak = shutil.which("espeak-ng")
        if espeak is None:
            raise RuntimeError("no audio: the speech evaluation set is not built and espeak-ng is not installed")
        clips = []
        with tempfile.TemporaryDirectory() as tmp:
            for i, text in enumerate(speech_eval.SENTENCES[:n]):
                path = Path(tmp) / f"{i}.wav"
                subprocess.run([espeak, "-s", "150", "-w", str(path), text], check=True, capture_output=True)
                clips.append((load_audio(path), text))
        source = "espeak-ng"
    clips = [clips[i % len(clips)] for i in range(n)]
    return [a for a, _ in clips], [t for _, t in clips], source


def whisper_case(setup: Setup, sizes: dict, repeats: int, warmup: int, skipped: dict) -> tuple[list[dict], dict]:
    from multimodal.convert.whisper import _packaged_model, default_model_path, load_whisper
    from multimodal.generation.transcribe import transcribe_batch
    from multimodal.media.audio import SAMPLE_RATE
    from multimodal.tokenizers.whisper_text import WhisperTokenizer

    from .asr import normaliser, wer

    audios, texts, source = speech_clips(sizes["files"])
    batch, fp16 = sizes["batch"], setup.cuda
    folder = default_model_path()
    model = load_whisper(folder, dtype=torch.float16 if fp16 else torch.float32, device=setup.device).eval()
    tokenizer = WhisperTokenizer.from_file(folder / "tokenizer.json")
    steps = {"ours": setup.step(lambda: [r["text"] for r in transcribe_batch(
        model, tokenizer, audios, batch_size=batch, sampling_rate=SAMPLE_RATE, beam_size=BEAM, fp16=fp16)],
        attention=False)}
    fw_name = f"faster-whisper {'float16' if fp16 else 'float32'}"
    try:
        from faster_whisper import WhisperModel

        fw = WhisperModel(str(_packaged_model()), device=setup.device, compute_type="float16" if fp16 else "float32",
                          cpu_threads=torch.get_num_threads())
        steps[fw_name] = setup.step(lambda: ["".join(s.text for s in fw.transcribe(a, beam_size=BEAM, language="en")[0])
                                             for a in audios], attention=False)
    except Exception as error:  # e.g. CTranslate2 without its CUDA libraries
        skipped[f"whisper transcription: {fw_name}"] = reason(error)
    rows, outputs = compare(setup, "whisper", "transcription", steps, flops=None, items=len(audios), unit="files",
                            batch=batch, repeats=repeats, warmup=warmup, skipped=skipped,
                            count=lambda: WhisperWork(model))
    audio_seconds = sum(len(a) for a in audios) / SAMPLE_RATE
    norm = normaliser()
    for row in rows:
        row["audio_seconds_per_s"] = audio_seconds / row["seconds_per_step"]
        row["wer"] = wer([norm(t) for t in texts], [norm(t) for t in outputs[row["model"]]])[0]
    return rows, {"model": "whisper tiny.en", "dtype": "float16" if fp16 else "float32", "files": len(audios),
                  "audio_seconds": audio_seconds, "audio": source, "batch": batch, "beam_size": BEAM,
                  "flops_per_step": rows[0]["flops_per_step"],
                  "flops_counted": "by WhisperWork on our first run; the reference's row uses the same count"}


RUNS = {"dit": dit_case, "gpt": gpt_case, "whisper": whisper_case, "vit": vit_case}


# ------------------------------------------------------------------------------------------- main
def table(rows: list[dict]) -> str:
    return markdown_table(
        ["case", "model", "batch", "s / step", "items / s", "items", "GFLOP / step", "TFLOP/s", "MFU %",
         "ours / ref speed", "step GiB"],
        [[f"{r['case']} {r['task']}", r["model"], r["batch"], r["seconds_per_step"], r["items_per_s"], r["unit"],
          r["flops_per_step"] / 1e9, r["achieved_tflops"],
          "-" if r["mfu"] is None else 100 * r["mfu"], r.get("speed_ours_over_reference", "-"),
          "-" if r["step_memory_gib"] is None else r["step_memory_gib"]] for r in rows])


def versions() -> dict[str, str]:
    out = {}
    for module in ("torch", "diffusers", "transformers", "timm", "faster_whisper", "ctranslate2"):
        try:
            out[module] = __import__(module).__version__
        except Exception:
            pass
    return out


def main(argv=None) -> dict | None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, float32; writes only to --out")
    parser.add_argument("--compile", action="store_true", help="torch.compile ours and the reference (not Whisper)")
    parser.add_argument("--batch", type=int, default=None, help="batch of every case (Whisper: files side by side)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per model (default 10, Whisper 3; dry run 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per model (default 3, Whisper at most 2; dry run 1)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's peak (default: by its name)")
    parser.add_argument("--out", default=None, help="results JSON (default results/gpu.json; dry run: none)")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():  # `make bench` runs every benchmark on any machine
        print("benchmarks.gpu: no CUDA device here; nothing measured (--dry-run: a CPU smoke run)")
        return None
    cuda = not args.dry_run
    name = torch.cuda.get_device_name(0) if cuda else None
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(name)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    setup = Setup("cuda" if cuda else "cpu", amp=cuda, compile=args.compile, peak=peak)
    sizes = DRY if args.dry_run else FULL
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    print(f"{name or 'CPU (dry run)'}: peak {peak / 1e12 if peak else None} TFLOP/s; "
          f"{'bf16 autocast' if setup.amp else 'float32'}{', torch.compile' if args.compile else ''}", flush=True)
    rows, configs, skipped, errors = [], {}, {}, {}
    for case in args.cases:
        case_sizes = {**sizes[case], **({"batch": args.batch} if args.batch else {})}
        case_warmup = warmup
        if case == "whisper":  # a step transcribes every file: fewer of them
            repeats, case_warmup = args.steps or (3 if cuda else 2), min(warmup, 2)
            if args.batch:
                case_sizes["files"] = max(case_sizes["files"], args.batch) if args.dry_run else 4 * args.batch
        else:
            repeats = args.steps or (10 if cuda else 2)
        print(f"{case}:", flush=True)
        try:
            case_rows, configs[case] = RUNS[case](setup, case_sizes, repeats, case_warmup, skipped)
            rows += case_rows
        except Exception as error:  # record it and go on to the next case; the exit status says so
            errors[case] = reason(error)
            print(f"  failed: {errors[case]}", flush=True)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    print()
    print(table(rows))
    for what, why in skipped.items():
        print(f"skipped {what}: {why}")
    results = {"gpu": name, "dry_run": args.dry_run, "peak_tflops": peak / 1e12 if peak else None,
               "peak_source": "--peak-tflops" if args.peak_tflops else ("device name" if peak else None),
               "goal_mfu": GOAL_MFU, "precision": "bf16 autocast (Whisper float16)" if setup.amp else "float32",
               "compile": args.compile, "attention": "SDPA: flash, memory-efficient" if cuda else "SDPA (default)",
               "flops_formula": FORMULA, "warmup_steps": warmup, "versions": versions(), "configs": configs,
               "rows": rows, "skipped": skipped, "errors": errors,
               "peak_memory_allocated_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None,
               "table": table(rows)}
    if cuda or args.out:
        print(f"wrote {write_results('gpu', results, args.out)}")
    if errors:
        raise SystemExit(f"benchmarks.gpu: {len(errors)} case(s) failed: {errors}")
    return results


if __name__ == "__main__":
    main()
