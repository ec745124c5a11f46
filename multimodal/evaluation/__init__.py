"""Metrics and judges that benchmarks and tests share: word error rate (``wer``), the judge of the
captioned world (``world_judge``), the Fréchet distance between feature sets (``frechet``) and the
text-to-image scores built on them (``text_to_image``)."""
