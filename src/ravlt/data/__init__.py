"""Datasets the project generates offline (synthetic shapes in COCO / ADE20K layouts) and dataset wrappers."""
