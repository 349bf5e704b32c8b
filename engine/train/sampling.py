"""Mini-batch schedules: plain shuffling and seed 003's batch re-balancing.

A schedule is a list of batches; each batch is a pair (sample indices, copy indices), the copy index selecting
one of an offline-augmented image's fixed variants (P0: 4).  Everything is drawn from the given generator, so
the schedule of epoch ``e`` is a pure function of (seed, e) and a resumed run sees the same batches.
"""

from __future__ import annotations

import math

import torch


def shuffled_batches(n: int, batch_size: int, g: torch.Generator, copies: int = 1,
                     min_last: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every (sample, copy) pair once per epoch in random order; a last batch smaller than ``min_last``
    is dropped (BatchNorm cannot train on one sample)."""
    total = n * copies
    order = torch.randperm(total, generator=g)
    out = []
    for start in range(0, total, batch_size):
        chunk = order[start:start + batch_size]
        if len(chunk) < min_last:
            break
        out.append((chunk // copies, chunk % copies))
    return out


def rebalanced_batches(y: torch.Tensor, batch_size: int, g: torch.Generator, positive: int,
                       copies: int = 1, positive_share: float = 0.3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """COVID-Net's batch re-balancing (seed 003 repository): each batch is first filled from the
    non-positive samples (shuffled, cycling), then ``max(1, round(share × batch))`` of its slots are
    overwritten with randomly drawn positive (COVID) samples.  Batches per epoch = ceil(N × copies / batch)."""
    y = torch.as_tensor(y)
    pos = torch.nonzero(y == positive).flatten()
    neg = torch.nonzero(y != positive).flatten()
    if len(pos) == 0 or len(neg) == 0:
        return shuffled_batches(len(y), batch_size, g, copies)
    n_batches = math.ceil(len(y) * copies / batch_size)
    n_pos = max(1, int(round(positive_share * batch_size)))
    neg_pairs = torch.stack([neg.repeat_interleave(copies), torch.arange(copies).repeat(len(neg))], 1)
    order = neg_pairs[torch.randperm(len(neg_pairs), generator=g)]
    out = []
    cursor = 0
    for _ in range(n_batches):
        take, filled = [], 0
        while filled < batch_size:
            if cursor >= len(order):
                order = neg_pairs[torch.randperm(len(neg_pairs), generator=g)]
                cursor = 0
            k = min(batch_size - filled, len(order) - cursor)
            take.append(order[cursor:cursor + k])
            cursor += k
            filled += k
        batch = torch.cat(take)
        slots = torch.randperm(batch_size, generator=g)[:n_pos]
        chosen = pos[torch.randint(len(pos), (n_pos,), generator=g)]
        batch[slots, 0] = chosen
        batch[slots, 1] = torch.randint(copies, (n_pos,), generator=g)
        out.append((batch[:, 0].clone(), batch[:, 1].clone()))
    return out
