"""Throughput and memory benchmark of RAVLT beside timm's convnext_tiny and Swin-T: ``make bench``."""
