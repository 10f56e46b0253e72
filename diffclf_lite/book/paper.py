"""Numbers the papers report, for the chapters to set beside their own (never computed here; labelled as reported).

`LI23_TABLE1`: zero-shot top-1 accuracy in % from Li et al. (ICCV 2023), Table 1: the Diffusion Classifier on Stable
Diffusion 2.0 and two CLIP models, on full test splits (ImageNet on a 2,000-4,000 image subset).
"""
from __future__ import annotations

__all__ = ["LI23_TABLE1", "TABLE1_DATASETS", "CJ23_WEIGHTING", "CJ23_SAVINGS"]

TABLE1_DATASETS = ("Food-101", "CIFAR-10", "FGVC Aircraft", "Oxford Pets", "Flowers-102", "STL-10", "ImageNet",
                   "ObjectNet")
LI23_TABLE1: dict[str, dict[str, float]] = {
    method: dict(zip(TABLE1_DATASETS, row)) for method, row in {
        "Diffusion Classifier (SD 2.0)": (77.7, 88.5, 26.4, 87.3, 66.3, 95.4, 61.4, 43.4),
        "CLIP ResNet-50": (81.1, 75.6, 19.3, 85.4, 65.9, 94.3, 58.2, 40.0),
        "OpenCLIP ViT-H/14": (92.7, 97.3, 42.3, 94.6, 79.9, 98.3, 76.8, 69.2),
    }.items()
}

# Clark & Jaini (NeurIPS 2023), as they report them: their timestep weighting w_t = exp(-7t) against uniform
# ("simple") weights, zero-shot top-1 accuracy in % with Stable Diffusion on Caltech101; and their savings from
# sharing the noise across classes and from pruning, as factors of compute.
CJ23_WEIGHTING = {"dataset": "Caltech101", "model": "Stable Diffusion", "exp(-7t)": 73.0, "uniform": 71.4}
CJ23_SAVINGS = {"shared noise vs independent": "about 100x", "pruning, further": "8-10x",
                "overall vs naive scoring": "up to 1000x"}
