"""How aligned the two models are: retrieval, cosine gaps, CKA, per-episode scores, t-SNE.

Embeddings ``z_u``, ``z_e`` are (B, D), row i of each from the same episode; similarities are
cosine (every function normalises its inputs). Feature matrices for CKA are (N, D) raw
features of any widths.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from embodied.fileio import replace_atomically


def _cosine_matrix(z_u: torch.Tensor, z_e: torch.Tensor) -> torch.Tensor:
    """(B, D), (B', D) -> (B, B') cosine similarities."""
    z_u = F.normalize(torch.as_tensor(z_u).detach().float(), dim=-1)
    z_e = F.normalize(torch.as_tensor(z_e).detach().float(), dim=-1)
    return z_u @ z_e.T


def recall_at_k(
    z_u: torch.Tensor,
    z_e: torch.Tensor,
    ks: Sequence[int] = (1, 5),
    match: torch.Tensor | None = None,
) -> dict[str, float]:
    """Recall@k of cross-modal retrieval in both directions: ``{"u2e@k": ..., "e2u@k": ...}``.

    u->e: each ``z_u[i]`` ranks all ``z_e`` by cosine; e->u the other way round. A query counts
    as retrieved when one of its k most similar items is correct:

    - ``match`` None: the partner of row i is row i of the other side, and only it (the
      paper's Recall@1 of spontaneous alignment);
    - ``match`` (B, B) bool: ``match[i, j]`` says ``z_e[j]`` is correct for ``z_u[i]`` (and
      ``z_u[i]`` for ``z_e[j]``); a hit on any positive counts, e.g. the same instruction.
      A query with no positive never counts.

    k larger than B is taken as B (then recall is 1). Compare with :func:`chance_recall_at_k`.
    """
    sim = _cosine_matrix(z_u, z_e)  # (B, B)
    b = sim.shape[0]
    if sim.shape[1] != b:
        raise ValueError(f"z_u and z_e must hold the same number of rows, got {tuple(sim.shape)}")
    if match is None:
        match = torch.eye(b, dtype=torch.bool)
    match = torch.as_tensor(match, dtype=torch.bool, device=sim.device)
    if tuple(match.shape) != (b, b):
        raise ValueError(f"match must be ({b}, {b}), got {tuple(match.shape)}")
    out: dict[str, float] = {}
    for name, s, m in (("u2e", sim, match), ("e2u", sim.T, match.T)):
        for k in ks:
            top = s.topk(min(k, b), dim=1).indices  # (B, k) indices of the k most similar
            hit = m.gather(1, top).any(dim=1)  # (B,)
            out[f"{name}@{k}"] = hit.float().mean().item()
    return out


def chance_recall_at_k(batch_size: int, k: int, match: torch.Tensor | None = None) -> float:
    """Expected recall@k of a random ranking, to read :func:`recall_at_k` against.

    One correct item among B: ``min(k, B) / B``. With a ``match`` matrix, a query with P
    correct items hits with probability ``1 - C(B - P, k) / C(B, k)``, averaged over the
    queries of both directions.
    """
    if batch_size < 1 or k < 1:
        raise ValueError(f"batch_size and k must be positive, got {batch_size} and {k}")
    if match is None:
        return min(k, batch_size) / batch_size
    m = torch.as_tensor(match, dtype=torch.bool)
    counts = torch.cat([m.sum(dim=1), m.sum(dim=0)]).tolist()  # P of each u->e, then e->u query
    k = min(k, batch_size)
    total = math.comb(batch_size, k)
    return sum(1 - math.comb(batch_size - p, k) / total for p in counts) / len(counts)


def episode_means(z: torch.Tensor, episode: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) embeddings and their (N,) episode ids -> (E, D) the mean of each episode's
    L2-normalised rows, and the (E,) episode ids in ascending order."""
    # on the CPU, where the ids are: a validation set's few hundred rows, and no device to match
    z = F.normalize(torch.as_tensor(z).detach().float().cpu(), dim=-1)
    episode = torch.as_tensor(episode).reshape(-1).cpu()
    ids, inverse = torch.unique(episode, return_inverse=True)  # (E,), (N,)
    sums = torch.zeros(len(ids), z.shape[1], dtype=z.dtype).index_add_(0, inverse, z)  # (E, D)
    counts = torch.bincount(inverse, minlength=len(ids)).clamp_min(1)[:, None]  # (E, 1)
    return sums / counts, ids


def gallery_retrieval(
    z_u: torch.Tensor, z_e: torch.Tensor, instruction: torch.Tensor, label: torch.Tensor
) -> dict[str, float]:
    """Retrieval over a fixed gallery of one ``(z_u, z_e)`` pair per episode, at every level.

    ``z_u``, ``z_e`` (E, D): row i of both describe episode i (e.g. :func:`episode_means`);
    ``instruction``, ``label`` (E,): its instruction id and class. Each query ranks the whole
    other side by cosine; the numbers do not depend on how batches were drawn. Returned, each
    both ways (``u2e``, ``e2u``) beside the chance level of a random ranking:

    - ``recall@1_<level>_<dir>`` for ``level`` in episode, instruction, class: the top-1 item
      is the partner itself, one of the same instruction, one of the same class
      (``chance@1_<level>``);
    - ``within_instruction@1_<dir>``: the partner is ranked first among the episodes of the
      same instruction, the part of the episode level that knowing the label cannot give
      (``chance@1_within_instruction``: the mean of 1 / episodes of the query's instruction;
      queries alone in their instruction are left out);
    - ``gallery``: E.
    """
    e = len(z_u)
    if len(z_e) != e or len(instruction) != e or len(label) != e:
        raise ValueError("z_u, z_e, instruction and label must describe the same episodes")
    if e < 2:
        raise ValueError(f"a gallery needs at least 2 episodes, got {e}")
    instruction = torch.as_tensor(instruction).reshape(-1).cpu()
    label = torch.as_tensor(label).reshape(-1).cpu()
    sim = _cosine_matrix(z_u, z_e).cpu()  # (E, E)
    out: dict[str, float] = {"gallery": float(e)}
    for level, ids in (("episode", None), ("instruction", instruction), ("class", label)):
        match = torch.eye(e, dtype=torch.bool) if ids is None else ids[:, None] == ids[None, :]  # (E, E)
        recall = recall_at_k(z_u, z_e, ks=(1,), match=match)
        out[f"recall@1_{level}_u2e"] = recall["u2e@1"]
        out[f"recall@1_{level}_e2u"] = recall["e2u@1"]
        out[f"chance@1_{level}"] = chance_recall_at_k(e, 1, match)
    same = instruction[:, None] == instruction[None, :]  # (E, E) candidates of each query
    counted = same.sum(dim=1) > 1  # (E,) queries with another episode of their instruction
    if counted.any():
        for name, s in (("u2e", sim), ("e2u", sim.T)):
            masked = s.masked_fill(~same, -math.inf)  # other instructions out of the ranking
            hit = masked.argmax(dim=1) == torch.arange(e)  # (E,)
            out[f"within_instruction@1_{name}"] = hit[counted].float().mean().item()
        out["chance@1_within_instruction"] = (1.0 / same.sum(dim=1)[counted].float()).mean().item()
    else:
        out |= {f"within_instruction@1_{d}": math.nan for d in ("u2e", "e2u")}
        out["chance@1_within_instruction"] = math.nan
    return out


def positive_negative_cosine(
    z_u: torch.Tensor, z_e: torch.Tensor, positives: torch.Tensor
) -> dict[str, float]:
    """Mean cosine of positive pairs and of negative pairs: ``{"pos": ..., "neg": ...}``.

    ``positives`` is the (B, B) mask of :func:`~embodied.mirror.loss.positive_mask`. An empty
    set (no negatives in a one-class batch) gives NaN for its mean.
    """
    sim = _cosine_matrix(z_u, z_e)  # (B, B)
    pos = torch.as_tensor(positives, dtype=torch.bool, device=sim.device)
    if pos.shape != sim.shape:
        raise ValueError(f"positives must be {tuple(sim.shape)}, got {tuple(pos.shape)}")
    return {
        "pos": sim[pos].mean().item() if pos.any() else math.nan,
        "neg": sim[~pos].mean().item() if (~pos).any() else math.nan,
    }


def pair_alignment(z_u: torch.Tensor, z_e: torch.Tensor) -> torch.Tensor:
    """(B,) cosine of each pair (row i of both sides): the per-episode alignment score.

    Averaged over an episode's windows, it is what the paper relates to success (alignment is
    higher on successful episodes than on failed ones).
    """
    z_u, z_e = torch.as_tensor(z_u).detach().float(), torch.as_tensor(z_e).detach().float()
    if z_u.shape != z_e.shape:
        raise ValueError(f"z_u {tuple(z_u.shape)} and z_e {tuple(z_e.shape)} must have the same shape")
    return F.cosine_similarity(z_u, z_e, dim=-1)  # (B,)


def linear_cka(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Linear centered kernel alignment of features ``x`` (N, P) and ``y`` (N, Q); in [0, 1].

    Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited", eq. 5
    (https://arxiv.org/abs/1905.00414): with column-centred X and Y,
    ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``. Row i of both must describe the same sample;
    the widths may differ. Invariant to orthogonal transforms and isotropic scaling of either
    side, not to arbitrary invertible linear maps. NaN when either side is constant.
    """
    x = torch.as_tensor(x).detach().to(torch.float64).flatten(1)  # (N, P)
    y = torch.as_tensor(y).detach().to(torch.float64).flatten(1)  # (N, Q)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same samples, got {x.shape[0]} and {y.shape[0]} rows")
    if x.shape[0] < 2:
        raise ValueError("linear_cka needs at least 2 samples")
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    # Feature-space form: P x Q and P x P products, cheaper than N x N Gram matrices when N is large.
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return (cross / norm).item() if norm > 0 else math.nan


def tsne_plot(
    z: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | Sequence[int],
    class_names: Sequence[str],
    path: str | Path,
    *,
    title: str | None = None,
    perplexity: float = 30.0,
    seed: int = 0,
    groups: Sequence[int] | np.ndarray | None = None,
    group_names: Sequence[str] = (),
    instructions: Sequence[int] | np.ndarray | None = None,
    instruction_names: Sequence[str] = (),
) -> Path:
    """Write a PNG of a 2-D t-SNE of embeddings ``z`` (N, D), each point coloured by its class.

    The rows are L2-normalised first, so t-SNE's Euclidean distances rank pairs as the cosine
    of the shared space does. ``labels`` (N,) index ``class_names``. ``groups`` (N,) index
    ``group_names`` and set each point's marker (e.g. z_u as circles, z_e as triangles), so
    one can see whether the two sides of a class meet. With ``instructions`` (N,) indexing
    ``instruction_names``, the marker tells the instructions of a class apart instead (the
    first of a class a circle, the second a triangle, ...), the legend lists every instruction,
    and the groups are told apart by fill (the first filled, the others hollow). The perplexity is lowered to
    (N - 1) / 3 for small N. The file is written whole or not at all. Needs scikit-learn.
    """
    try:
        from sklearn.manifold import TSNE
    except ImportError as err:  # an optional analysis dependency
        raise ImportError("tsne_plot needs scikit-learn: pip install scikit-learn") from err
    from matplotlib.figure import Figure  # a bare Figure draws with Agg; no pyplot global state

    x = F.normalize(torch.as_tensor(z).detach().float().flatten(1), dim=-1).cpu().numpy()  # (N, D)
    labels = np.asarray(torch.as_tensor(labels).cpu()).reshape(-1)  # (N,)
    n = len(x)
    if len(labels) != n:
        raise ValueError(f"{n} embeddings but {len(labels)} labels")
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {n}")
    xy = TSNE(
        n_components=2, perplexity=min(perplexity, (n - 1) / 3), init="pca", random_state=seed
    ).fit_transform(x)  # (N, 2)

    groups = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups).reshape(-1)
    if len(groups) != n:
        raise ValueError(f"{n} embeddings but {len(groups)} groups")
    markers = "o^sDvP*X"
    classes = np.unique(labels)
    cmap = _colormap(len(classes))
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    if instructions is not None:
        _draw_instructions(ax, xy, labels, np.asarray(instructions).reshape(-1), groups, cmap, markers)
        legend = _instruction_legend(
            ax, labels, np.asarray(instructions).reshape(-1), class_names, instruction_names, cmap, markers
        )
        for g, group in enumerate(group_names):  # fill key: the first group filled, the others hollow
            face = "grey" if g == 0 else "none"
            ax.scatter([], [], s=12, facecolors=face, edgecolors="grey", marker="o", label=group)
        classes = np.arange(legend)  # legend entries, for the size check below
    for i, c in enumerate(classes if instructions is None else ()):
        name = class_names[c] if 0 <= c < len(class_names) else f"class {c}"
        for g in np.unique(groups):
            sel = (labels == c) & (groups == g)
            marker = markers[int(g) % len(markers)]
            ax.scatter(
                xy[sel, 0],
                xy[sel, 1],
                s=12,
                color=cmap(i),
                marker=marker,
                label=name if g == groups.min() else None,
            )
    for g, group in enumerate(group_names if instructions is None else ()):  # marker key, one per group
        ax.scatter([], [], s=12, color="grey", marker=markers[g % len(markers)], label=group)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    if len(classes) + len(group_names) <= 32:
        ax.legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)

    # bbox_inches="tight" keeps the legend outside the axes
    return replace_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))


def _instruction_rank(labels: np.ndarray, instructions: np.ndarray) -> dict[int, int]:
    """instruction id -> its rank among the instructions of its class (0, 1, ...), for the marker."""
    rank: dict[int, int] = {}
    for c in np.unique(labels):
        for r, i in enumerate(np.unique(instructions[labels == c])):
            rank.setdefault(int(i), r)
    return rank


def _draw_instructions(ax, xy, labels, instructions, groups, cmap, markers) -> None:
    """Points coloured by class, marked by instruction within the class, filled by group."""
    classes = list(np.unique(labels))
    rank = _instruction_rank(labels, instructions)
    for i in np.unique(instructions):
        for g in np.unique(groups):
            sel = (instructions == i) & (groups == g)
            if not sel.any():
                continue
            colour = cmap(classes.index(labels[sel][0]))
            ax.scatter(
                xy[sel, 0],
                xy[sel, 1],
                s=14,
                marker=markers[rank[int(i)] % len(markers)],
                facecolors=colour if g == groups.min() else "none",
                edgecolors=colour,
                linewidths=0.8,
            )


def _instruction_legend(ax, labels, instructions, class_names, instruction_names, cmap, markers) -> int:
    """One legend entry per instruction (its class's colour, its marker); returns their number."""
    classes = list(np.unique(labels))
    rank = _instruction_rank(labels, instructions)
    entries = 0
    for c in classes:
        cname = class_names[c] if 0 <= c < len(class_names) else f"class {c}"
        for i in np.unique(instructions[labels == c]):
            iname = instruction_names[i] if 0 <= i < len(instruction_names) else f"instruction {i}"
            ax.scatter(
                [],
                [],
                s=14,
                color=cmap(classes.index(c)),
                marker=markers[rank[int(i)] % len(markers)],
                label=f"{cname}: {iname}",
            )
            entries += 1
    return entries


def _colormap(n: int):
    from matplotlib import colormaps

    if n <= 10:
        return colormaps["tab10"]
    if n <= 20:
        return colormaps["tab20"]
    return colormaps["turbo"].resampled(n)
