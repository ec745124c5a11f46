"""Metrics and judges that benchmarks and tests share: word error rate (``wer``)."""
