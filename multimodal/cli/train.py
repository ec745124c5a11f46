"""``multimodal train MODEL`` and ``multimodal evaluate MODEL``: each model's recipe in
``multimodal.training`` brings its own arguments."""

from __future__ import annotations

import argparse

from ..training import autoencoder, lora, speech_codec, text2codes, text2image, text2speech, vit, vqvae, whisper
from .command import Command

# (help, add_arguments, run) for each model, by name.
TRAINABLE = {
    "vit": ("a ViT image classifier on an image folder or Fashion-MNIST",
            vit.add_train_vit_arguments, vit.run_train_vit),
    "whisper": ("fine-tune Whisper on JSONL manifests of {audio, text} (or speech-digits)",
                whisper.add_train_whisper_arguments, whisper.run_train_whisper),
    "vae": ("an image autoencoder (AutoencoderKL) on the captioned world",
            autoencoder.add_train_autoencoder_arguments, autoencoder.run_train_autoencoder),
    "text2image": ("a text-to-image DiT or SiT on the captioned world (needs a trained vae)",
                   text2image.add_train_text2image_arguments, text2image.run_train_text2image),
    "vqvae": ("an image VQ-VAE (codebook) on the captioned world",
              vqvae.add_train_vqvae_arguments, vqvae.run_train_vqvae),
    "videovq": ("a video VQ-VAE (Conv3d codebook) on the moving world's clips",
                vqvae.add_train_videovq_arguments, vqvae.run_train_vqvae),
    "text2video": ("a text -> video codes GPT on the moving world (needs a trained videovq)",
                   text2codes.add_train_text2video_arguments, text2codes.run_train_text2codes),
    "text2codes": ("a text -> codes GPT on the captioned world (needs a trained vqvae)",
                   text2codes.add_train_text2codes_arguments, text2codes.run_train_text2codes),
    "speech-codec": ("a speech codec (log-mel residual VQ) on the training voices' speech",
                     speech_codec.add_train_speech_codec_arguments, speech_codec.run_train_speech_codec),
    "text2speech": ("a text -> speech codes GPT on the training voices (needs a trained speech-codec)",
                    text2speech.add_train_text2speech_arguments, text2speech.run_train_text2speech),
    "lora": ("a LoRA adapter for a Whisper or ViT model (--base), with that model's recipe options",
             lora.add_train_lora_arguments, lora.run_train_lora),
}
EVALUABLE = {
    "vit": ("accuracy, per-class accuracy and confusion matrix of a ViT checkpoint",
            vit.add_evaluate_vit_arguments, vit.run_evaluate_vit),
    "whisper": ("word error rate and exact-match rate of a Whisper checkpoint on a manifest",
                whisper.add_evaluate_whisper_arguments, whisper.run_evaluate_whisper),
}


def _per_model(models: dict[str, tuple]) -> tuple:
    def arguments(parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="model", title="models", required=True)
        for name, (help, add_arguments, _) in models.items():
            add_arguments(sub.add_parser(name, help=help))

    def run(args: argparse.Namespace) -> None:
        models[args.model][2](args)  # what a recipe returns (its numbers) is for Python callers

    return arguments, run


TRAIN = Command("train", f"train a model ({', '.join(TRAINABLE)}); --resume continues a run", *_per_model(TRAINABLE))
EVALUATE = Command("evaluate", f"evaluate a trained model ({', '.join(EVALUABLE)})", *_per_model(EVALUABLE))
