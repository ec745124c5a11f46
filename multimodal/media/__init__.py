"""Decoding and writing media: audio files and arrays (``audio``), images (``images``)."""
