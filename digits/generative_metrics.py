"""Measures of generated digits in the feature space of a trained classifier (the "judge").

All distances are taken between penultimate-layer features of the judge (for BestCNN: the
256-unit fully connected layer after batch norm and ReLU, before dropout), never raw pixels:
the classifier's features place digits of one class together and say what makes a digit a
digit, as Inception features do for FID on photographs.

- Fréchet distance (Heusel et al. 2017): between Gaussians fitted to two feature sets.
- Precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls
  around its points reaching their k-th nearest neighbour; precision is the share of generated
  points inside the real manifold, recall the share of real points inside the generated one.
- 1-nearest-neighbour two-sample test (Lopez-Paz & Oquab 2017): leave-one-out 1-NN accuracy
  of telling real from generated in the union; 50 % means indistinguishable.
- Classifier "inception score" (Salimans et al. 2016): exp E[KL(p(y|x) || p(y))]; at most the
  number of classes, reached by confident predictions spread evenly over the classes.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg
from torch import nn

from digits.metrics import accuracy


@torch.no_grad()
def judge_outputs(model: nn.Module, images: torch.Tensor,
                  batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate features [N, H], logits [N, C]) of a BestCNN for images in [0, 1].

    `images` is float [N, 28, 28] or [N, 1, 28, 28] in [0, 1] (or uint8 [N, 28, 28]); the
    model runs in eval mode (batch norm on its running statistics, dropout off), so the
    features of one image do not depend on the rest of its batch.
    """
    was_training = model.training
    model.eval()
    head = model.classifier
    features, logits = [], []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size]
        if x.dtype == torch.uint8:
            x = x.float() / 255
        if x.dim() == 3:
            x = x.unsqueeze(1)
        h = model.features(model.standardize(x.float()))
        h = head[3](head[2](head[1](head[0](h))))  # Flatten, Linear, BatchNorm1d, ReLU
        features.append(h.float())
        logits.append(head[5](head[4](h)).float())  # Dropout (identity in eval), Linear
    model.train(was_training)
    return torch.cat(features), torch.cat(logits)


def _float64(x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def frechet_distance(a: object, b: object) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a [N, D] and b [M, D]."""
    a, b = _float64(a), _float64(b)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # a collapsed set has a singular covariance: expected
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # near-singular product: nudge both diagonals, as FID does
        eps = np.eye(a.shape[1]) * 1e-6
        root = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    root = np.real(root)
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))
    return max(value, 0.0)  # rounding can leave a tiny negative for identical sets


def _kth_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point (the point itself excluded)."""
    d = torch.cdist(x, x)
    k = min(k, x.shape[0] - 1)
    return d.kthvalue(k + 1, dim=1).values  # the 1st smallest is the point itself (0)


def precision_recall(real: object, fake: object, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al.'s k-NN precision and recall of `fake` against `real` features."""
    real = torch.as_tensor(_float64(real))
    fake = torch.as_tensor(_float64(fake))
    real_radius, fake_radius = _kth_radius(real, k), _kth_radius(fake, k)
    d = torch.cdist(fake, real)  # [n_fake, n_real]
    precision = (d <= real_radius[None, :]).any(dim=1).double().mean()
    recall = (d <= fake_radius[:, None]).any(dim=0).double().mean()
    return float(precision), float(recall)


def diversity(features: object) -> float:
    """Mean pairwise Euclidean distance within a set (0 for one point repeated)."""
    x = torch.as_tensor(_float64(features))
    n = x.shape[0]
    if n < 2:
        return 0.0
    return float(torch.pdist(x).mean())


def one_nn_accuracy(real: object, fake: object) -> float:
    """Leave-one-out 1-NN accuracy of telling `real` from `fake` (0.5 = indistinguishable).

    Each point takes the label (real or generated) of its nearest other point in the union.
    """
    real, fake = _float64(real), _float64(fake)
    x = torch.as_tensor(np.concatenate([real, fake]))
    is_real = torch.cat([torch.ones(len(real), dtype=torch.bool),
                         torch.zeros(len(fake), dtype=torch.bool)])
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    nearest = d.argmin(dim=1)
    return float((is_real[nearest] == is_real).double().mean())


def inception_score(logits: object) -> float:
    """exp(E_x KL(p(y|x) || p(y))) of a classifier's logits [N, C]; between 1 and C."""
    log_p = torch.log_softmax(torch.as_tensor(_float64(logits)), dim=1)
    p = log_p.exp()
    log_marginal = torch.log(p.mean(0).clamp_min(1e-30))
    kl = (p * (log_p - log_marginal[None, :])).sum(1)
    return float(kl.mean().exp())


def conditional_accuracy(logits: object, requested: object) -> float:
    """Share of samples the judge assigns to the class they were generated (or labelled) as."""
    predictions = torch.as_tensor(_float64(logits)).argmax(1).numpy()
    return accuracy(np.asarray(_float64(requested), dtype=np.int64), predictions)


def per_class(fn, real: object, real_labels: object, fake: object,
              fake_labels: object, n_classes: int = 10) -> np.ndarray:
    """fn(real of class c, fake of class c) for every class c, as an array [n_classes, ...]."""
    real, fake = _float64(real), _float64(fake)
    real_labels = np.asarray(_float64(real_labels), dtype=np.int64)
    fake_labels = np.asarray(_float64(fake_labels), dtype=np.int64)
    return np.array([fn(real[real_labels == c], fake[fake_labels == c])
                     for c in range(n_classes)])
