"""A seeded synthetic catalogue with real structure: the embedded default data of hf_semtok.

The generator draws a latent two-level category hierarchy (top categories x subcategories), items inside it with
titles built from category-specific vocabulary ("Lumina Matte Rose Lipstick 3.5g"), several embedding views
("text", "image", "audio") that are noisy projections of the latent vectors, and user histories driven by the
same latent structure:

- each user prefers 1-2 subcategories and starts in one of them;
- the next subcategory follows a Markov chain: stay, move to the complementary subcategory of the same top
  category (lipstick -> eyeliner), jump along a cross-category link, switch to the user's other preferred
  subcategory, or (rarely) wander anywhere;
- with some probability the next item is the current item's fixed "successor" (refill, matching accessory),
  otherwise an item of the chosen subcategory drawn by a skewed (Zipf-like) popularity;
- a user never repeats an item.

So a sequential recommender can learn a lot that a popularity ranking cannot, and items of the same
subcategory sit close together in every embedding view. Everything is seeded: the same arguments give the same
catalogue, byte for byte.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hf_semtok.constants import DEFAULT_SEED
from hf_semtok.data.catalogue import Catalogue, compose_item_text

__all__ = ["SyntheticCatalogue", "make_synthetic_catalogue", "DEFAULT_MODALITY_DIMS"]

logger = logging.getLogger(__name__)

#: Embedding views produced by default, name -> dimension.
DEFAULT_MODALITY_DIMS: dict[str, int] = {"text": 64, "image": 32, "audio": 16}
# How strongly each view sees the (top category, subcategory, item) parts of the latent vector.
_VIEW_MIX = {"text": (1.0, 1.0, 0.6), "image": (0.5, 1.0, 1.0), "audio": (1.0, 0.4, 0.4)}

# top category -> (brands, shared adjectives, {subcategory noun: (modifiers, sizes)})
_VOCAB: dict[str, tuple[list[str], list[str], dict[str, tuple[list[str], list[str]]]]] = {
    "Makeup": (
        ["Lumina", "Velvetine", "Rougelle", "Aurora"],
        ["Matte", "Glossy", "Long-Wear", "Satin", "Sheer", "Waterproof"],
        {
            "Lipstick": (["Rose", "Crimson", "Nude", "Berry", "Coral"], ["3.5g", "4g", "2.8g", "Duo"]),
            "Mascara": (
                ["Volume", "Lengthening", "Curl", "Jet Black", "Brown"],
                ["8ml", "10ml", "12ml", "Mini"],
            ),
            "Foundation": (["Ivory", "Beige", "Honey", "Sand", "Cocoa"], ["30ml", "35ml", "40ml", "Travel"]),
            "Eyeliner": (["Pencil", "Liquid", "Gel", "Felt-Tip", "Smoky"], ["0.5ml", "1g", "1.2g", "Twin"]),
        },
    ),
    "Skincare": (
        ["Dermaly", "PureLeaf", "Hydrova", "Clarisse"],
        ["Hydrating", "Soothing", "Brightening", "Gentle", "Daily", "Overnight"],
        {
            "Moisturizer": (
                ["Aloe", "Shea", "Ceramide", "Oat", "Cucumber"],
                ["50ml", "75ml", "100ml", "Jar"],
            ),
            "Serum": (
                ["Vitamin C", "Retinol", "Hyaluronic", "Niacinamide", "Peptide"],
                ["15ml", "30ml", "50ml"],
            ),
            "Cleanser": (
                ["Foaming", "Cream", "Gel", "Micellar", "Clay"],
                ["150ml", "200ml", "250ml", "Refill"],
            ),
            "Sunscreen": (
                ["SPF 30", "SPF 50", "Mineral", "Tinted", "Sport"],
                ["40ml", "50ml", "100ml", "Stick"],
            ),
        },
    ),
    "Haircare": (
        ["Silkara", "Maneworks", "Botanica", "Kerastil"],
        ["Repairing", "Volumizing", "Smoothing", "Color-Safe", "Clarifying", "Nourishing"],
        {
            "Shampoo": (
                ["Argan", "Coconut", "Tea Tree", "Keratin", "Biotin"],
                ["250ml", "400ml", "1L", "Refill"],
            ),
            "Conditioner": (
                ["Argan", "Coconut", "Silk", "Honey", "Avocado"],
                ["200ml", "300ml", "1L", "Refill"],
            ),
            "Hair Oil": (["Argan", "Jojoba", "Camellia", "Rosemary", "Castor"], ["30ml", "50ml", "100ml"]),
            "Hair Spray": (
                ["Strong Hold", "Flexible", "Texture", "Shine", "Heat Shield"],
                ["150ml", "250ml"],
            ),
        },
    ),
    "Fragrance": (
        ["Maison Vey", "Oriel", "Sable & Co", "Nuit"],
        ["Fresh", "Warm", "Floral", "Woody", "Citrus", "Amber"],
        {
            "Eau de Parfum": (
                ["Jasmine", "Oud", "Vanilla", "Peony", "Sandalwood"],
                ["30ml", "50ml", "100ml"],
            ),
            "Body Mist": (["Peach", "Coconut", "Lavender", "Pear", "Sea Salt"], ["100ml", "236ml", "Travel"]),
            "Cologne": (["Vetiver", "Bergamot", "Cedar", "Leather", "Marine"], ["50ml", "100ml", "125ml"]),
            "Perfume Oil": (["Musk", "Rose", "Amber", "Tuberose", "Fig"], ["10ml", "15ml", "Roll-On"]),
        },
    ),
    "Kitchen": (
        ["Forgeline", "Casa Chef", "Ironleaf", "Brewmark"],
        ["Stainless", "Non-Stick", "Professional", "Compact", "Premium", "Classic"],
        {
            "Chef Knife": (["Damascus", "German Steel", "Ceramic", "Santoku", "Paring"], ['6"', '8"', '10"']),
            "Frying Pan": (
                ["Cast Iron", "Copper", "Ceramic", "Tri-Ply", "Carbon Steel"],
                ['8"', '10"', '12"'],
            ),
            "Cutting Board": (
                ["Bamboo", "Walnut", "Maple", "Plastic", "Teak"],
                ["Small", "Large", "Set of 3"],
            ),
            "Coffee Grinder": (
                ["Burr", "Blade", "Manual", "Conical", "Electric"],
                ["Black", "Silver", "White"],
            ),
        },
    ),
    "Outdoor": (
        ["Trailpeak", "Northwind", "Summit Co", "Wildmoss"],
        ["Lightweight", "Ultralight", "Rugged", "Waterproof", "Packable", "Insulated"],
        {
            "Tent": (
                ["Backpacking", "Dome", "Tunnel", "Pop-Up", "Family"],
                ["1-Person", "2-Person", "4-Person"],
            ),
            "Sleeping Bag": (["Mummy", "Down", "Synthetic", "Rectangular", "Kids"], ["20F", "35F", "50F"]),
            "Headlamp": (
                ["LED", "Rechargeable", "Red Light", "Zoom", "Running"],
                ["200lm", "400lm", "1000lm"],
            ),
            "Water Bottle": (["Steel", "Filter", "Collapsible", "Vacuum", "Sport"], ["500ml", "750ml", "1L"]),
        },
    ),
    "Electronics": (
        ["Voltra", "Sonique", "Pixelon", "Ampere"],
        ["Wireless", "Portable", "Fast", "Smart", "Noise-Cancelling", "Mini"],
        {
            "Headphones": (["Over-Ear", "On-Ear", "In-Ear", "Studio", "Gaming"], ["Black", "White", "Blue"]),
            "Phone Charger": (["USB-C", "Wall", "Car", "Magnetic", "Dual-Port"], ["20W", "30W", "65W"]),
            "Bluetooth Speaker": (["Waterproof", "Bass", "Party", "Pocket", "Stereo"], ["10W", "20W", "40W"]),
            "USB Cable": (["Braided", "Right-Angle", "Coiled", "Lightning", "USB-C"], ["1m", "2m", "3m"]),
        },
    ),
    "Toys": (
        ["Playmore", "Brickly", "Cuddle Co", "Gamewright"],
        ["Classic", "Deluxe", "Junior", "Family", "Travel", "Collector's"],
        {
            "Puzzle": (["Landscape", "3D", "Wooden", "Jigsaw", "Map"], ["500pc", "1000pc", "1500pc"]),
            "Board Game": (
                ["Strategy", "Party", "Trivia", "Cooperative", "Word"],
                ["Edition", "Set", "Pack"],
            ),
            "Building Blocks": (["Castle", "Space", "City", "Robot", "Train"], ["250pc", "500pc", "900pc"]),
            "Plush Toy": (["Bear", "Bunny", "Dragon", "Penguin", "Unicorn"], ["Small", "Medium", "Giant"]),
        },
    ),
}


@dataclass
class SyntheticCatalogue(Catalogue):
    """A `Catalogue` plus the latent structure that generated it.

    Args:
        embeddings: Modality name -> `(num_items, dim)` float32 matrix, rows in `item_ids` order. Items
            missing a modality have a row of NaN in that matrix.
        category_path: Item id -> `(top_category_index, subcategory_index)`; subcategory indices are global
            (`0 .. n_top * n_sub - 1`).
        latent: `(num_items, latent_dim)` latent item vectors the views were projected from.
        successor: Item id -> its fixed "successor" item (the sequential pattern in the histories).
    """

    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    category_path: dict[str, tuple[int, int]] = field(default_factory=dict)
    latent: np.ndarray | None = None
    successor: dict[str, str] = field(default_factory=dict)


def _vocab(
    n_top: int, n_sub: int
) -> list[tuple[str, list[str], list[str], list[tuple[str, list[str], list[str]]]]]:
    """Return `[(top_name, brands, adjectives, [(noun, modifiers, sizes), ...]), ...]` for any grid size."""
    tops = list(_VOCAB.items())
    out = []
    for t in range(n_top):
        name, (brands, adjectives, subs) = tops[t % len(tops)]
        if t >= len(tops):
            name = f"{name} {t // len(tops) + 1}"
        sub_items = list(subs.items())
        sub_list = []
        for s in range(n_sub):
            noun, (modifiers, sizes) = sub_items[s % len(sub_items)]
            if s >= len(sub_items):
                noun = f"{noun} {s // len(sub_items) + 1}"
            sub_list.append((noun, modifiers, sizes))
        out.append((name, brands, adjectives, sub_list))
    return out


# Long: 15 documented arguments; the body is ~48 lines of named steps.
def make_synthetic_catalogue(
    n_items: int = 1000,
    n_users: int = 2000,
    seed: int = DEFAULT_SEED,
    n_top_categories: int = 8,
    n_subcategories: int = 4,
    modality_dims: Mapping[str, int] | None = None,
    missing_fraction: Mapping[str, float] | None = None,
    latent_dim: int = 32,
    noise: float = 0.15,
    min_history: int = 5,
    mean_history: float = 10.0,
    max_history: int = 50,
    popularity_exponent: float = 1.0,
    p_successor: float = 0.35,
    name: str = "synthetic",
) -> SyntheticCatalogue:
    """Generate a seeded synthetic catalogue (see the module docstring for the structure).

    Args:
        n_items: Number of items (at least 2 per subcategory).
        n_users: Number of users (each gets one history).
        seed: Random seed; the same arguments and seed give identical output.
        n_top_categories: Top-level categories (8 named ones; more get numbered names).
        n_subcategories: Subcategories per top category (4 named ones per top; more get numbered names).
        modality_dims: Embedding views to produce, name -> dimension. Default `{"text": 64, "image": 32,
            "audio": 16}`. Known names mix the latent parts differently; other names use the "text" mix.
        missing_fraction: Modality -> fraction of items whose row is NaN (missing). Default `{"audio": 0.2}`.
        latent_dim: Size of the latent item vectors.
        noise: Standard deviation of the per-view Gaussian noise, relative to the signal.
        min_history: Shortest user history (5 as in 5-core data).
        mean_history: Mean history length.
        max_history: Longest user history.
        popularity_exponent: Zipf exponent of item popularity inside a subcategory (0 = uniform).
        p_successor: Probability that the next item is the current item's fixed successor.
        name: Catalogue name.

    Returns:
        A `SyntheticCatalogue` with item ids `"I0000"...`, user ids `"U0000"...`, titles, texts, two-level
        categories, histories, embeddings per modality, and the latent structure.
    """
    dims, missing = _check_arguments(
        n_items, n_users, n_top_categories, n_subcategories, modality_dims, missing_fraction,
        min_history, mean_history, max_history,
    )  # fmt: skip
    grid = _CategoryGrid(n_top_categories, n_subcategories)
    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)  # the order of draws from both generators is part of the seeded output

    # --- items per subcategory: uneven sizes (Dirichlet), at least 2 each -------------------------------
    shares = rng.dirichlet(np.full(grid.n_cat, 3.0))
    sizes = 2 + np.floor(shares * (n_items - 2 * grid.n_cat)).astype(int)
    sizes[np.argsort(-shares)[: n_items - sizes.sum()]] += 1  # hand out the rounding remainder
    item_sub = rng.permutation(np.repeat(np.arange(grid.n_cat), sizes))  # (n_items,), ids hide categories
    item_ids = [f"I{i:0{max(4, len(str(n_items - 1)))}d}" for i in range(n_items)]

    latent, embeddings = _latent_and_views(rng, grid, item_sub, latent_dim, dims, missing, noise)
    titles, texts, categories, category_path = _item_texts(pyrng, grid, item_ids, item_sub)
    members, cum_weights, successor_idx = _popularity_and_successors(
        rng, grid, item_sub, latent, popularity_exponent
    )
    histories = _user_histories(
        rng, pyrng, grid, item_ids, item_sub, members, cum_weights, successor_idx,
        n_users, min_history, mean_history, max_history, p_successor,
    )  # fmt: skip

    catalogue = SyntheticCatalogue(
        item_ids=item_ids,
        titles=titles,
        texts=texts,
        categories=categories,
        histories=histories,
        name=name,
        embeddings=embeddings,
        category_path=category_path,
        latent=latent,
        successor={item_ids[i]: item_ids[int(j)] for i, j in enumerate(successor_idx)},
    )
    logger.info(
        "Synthetic catalogue %r: %d items in %d x %d categories, %d users, %d interactions, views %s",
        name,
        n_items,
        n_top_categories,
        n_subcategories,
        n_users,
        catalogue.num_interactions,
        {m: e.shape[1] for m, e in embeddings.items()},
    )
    return catalogue


@dataclass(frozen=True)
class _CategoryGrid:
    """The two-level category structure: `n_top` top categories of `n_sub` subcategories each."""

    n_top: int
    n_sub: int

    @property
    def n_cat(self) -> int:
        return self.n_top * self.n_sub

    def complement(self, c: int) -> int:
        """The next subcategory of the same top category (where a matching accessory lives)."""
        top, j = divmod(c, self.n_sub)
        return top * self.n_sub + (j + 1) % self.n_sub

    def cross(self, c: int) -> int:
        """The same slot in the next top category."""
        top, j = divmod(c, self.n_sub)
        return ((top + 1) % self.n_top) * self.n_sub + j


def _check_arguments(
    n_items: int,
    n_users: int,
    n_top_categories: int,
    n_subcategories: int,
    modality_dims: Mapping[str, int] | None,
    missing_fraction: Mapping[str, float] | None,
    min_history: int,
    mean_history: float,
    max_history: int,
) -> tuple[dict[str, int], dict[str, float]]:
    """Validate `make_synthetic_catalogue`'s arguments; returns the modality dims and missing fractions."""
    n_cat = n_top_categories * n_subcategories
    if n_top_categories < 1 or n_subcategories < 1:
        raise ValueError("n_top_categories and n_subcategories must be >= 1.")
    if n_items < 2 * n_cat:
        raise ValueError(
            f"n_items={n_items} is too small for {n_cat} subcategories (need >= {2 * n_cat}); "
            "raise n_items or lower n_top_categories / n_subcategories."
        )
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}.")
    if not 1 <= min_history <= max_history:
        raise ValueError(f"Need 1 <= min_history <= max_history, got {min_history} and {max_history}.")
    if mean_history < min_history:
        raise ValueError(f"mean_history={mean_history} must be >= min_history={min_history}.")
    dims = dict(DEFAULT_MODALITY_DIMS if modality_dims is None else modality_dims)
    if not dims or any(int(d) < 1 for d in dims.values()):
        raise ValueError(f"modality_dims must name at least one view with a positive dimension, got {dims}.")
    missing = {"audio": 0.2} if missing_fraction is None else dict(missing_fraction)
    for mod, frac in missing.items():
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"missing_fraction[{mod!r}]={frac} must be in [0, 1).")
    return dims, missing


def _latent_and_views(
    rng: np.random.Generator,
    grid: _CategoryGrid,
    item_sub: np.ndarray,
    latent_dim: int,
    dims: Mapping[str, int],
    missing: Mapping[str, float],
    noise: float,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Latent item vectors (top + subcategory offset + item offset) and one noisy projection per modality."""
    n_items = len(item_sub)
    top_vec = rng.normal(size=(grid.n_top, latent_dim))
    sub_vec = rng.normal(scale=0.7, size=(grid.n_cat, latent_dim))
    item_vec = rng.normal(scale=0.6, size=(n_items, latent_dim))
    parts = (top_vec[item_sub // grid.n_sub], sub_vec[item_sub], item_vec)  # each (n_items, latent_dim)
    latent = (parts[0] + parts[1] + parts[2]).astype(np.float32)
    embeddings: dict[str, np.ndarray] = {}
    for mod, dim in dims.items():
        mix = _VIEW_MIX.get(mod, _VIEW_MIX["text"])
        signal = sum(w * p for w, p in zip(mix, parts))  # (n_items, latent_dim)
        proj = rng.normal(size=(latent_dim, int(dim))) / np.sqrt(latent_dim)
        view = signal @ proj  # (n_items, dim)
        view = view + rng.normal(scale=noise * view.std(), size=view.shape)
        view = view.astype(np.float32)
        frac = missing.get(mod, 0.0)
        if frac > 0:
            view[rng.random(n_items) < frac] = np.nan
        embeddings[mod] = view
    return latent, embeddings


def _item_texts(
    pyrng: random.Random, grid: _CategoryGrid, item_ids: Sequence[str], item_sub: np.ndarray
) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]], dict[str, tuple[int, int]]]:
    """Unique titles, item texts, category names and category paths from the vocabulary of each category."""
    vocab = _vocab(grid.n_top, grid.n_sub)
    titles: dict[str, str] = {}
    texts: dict[str, str] = {}
    categories: dict[str, list[str]] = {}
    category_path: dict[str, tuple[int, int]] = {}
    used: set[str] = set()
    for i, item in enumerate(item_ids):
        sub = int(item_sub[i])
        top = sub // grid.n_sub
        top_name, brands, adjectives, subs = vocab[top]
        noun, modifiers, size_list = subs[sub % grid.n_sub]
        brand = pyrng.choice(brands)
        for _ in range(20):
            title = f"{brand} {pyrng.choice(adjectives)} {pyrng.choice(modifiers)} {noun} {pyrng.choice(size_list)}"
            if title not in used:
                break
        else:
            title = next(f"{title} No. {k}" for k in itertools.count(2) if f"{title} No. {k}" not in used)
        used.add(title)
        titles[item] = title
        categories[item] = [top_name, noun]
        category_path[item] = (top, sub)
        texts[item] = compose_item_text(title[len(brand) + 1 :], brand, [top_name, noun])
    return titles, texts, categories, category_path


def _popularity_and_successors(
    rng: np.random.Generator,
    grid: _CategoryGrid,
    item_sub: np.ndarray,
    latent: np.ndarray,
    popularity_exponent: float,
) -> tuple[list[np.ndarray], list[list[float]], np.ndarray]:
    """Members of each subcategory, their cumulative Zipf weights, and each item's fixed successor."""
    members = [np.flatnonzero(item_sub == c) for c in range(grid.n_cat)]
    cum_weights: list[list[float]] = []
    for idx in members:
        ranks = rng.permutation(len(idx)) + 1
        cum_weights.append(list(itertools.accumulate((1.0 / ranks**popularity_exponent).tolist())))
    successor_idx = np.empty(len(item_sub), dtype=np.int64)
    for c in range(grid.n_cat):
        targets = members[grid.complement(c)]
        # the successor is the most similar item of the complementary subcategory (a matching accessory)
        sims = latent[members[c]] @ latent[targets].T  # (n_c, n_target)
        successor_idx[members[c]] = targets[np.argmax(sims, axis=1)]
    return members, cum_weights, successor_idx


def _user_histories(
    rng: np.random.Generator,
    pyrng: random.Random,
    grid: _CategoryGrid,
    item_ids: Sequence[str],
    item_sub: np.ndarray,
    members: Sequence[np.ndarray],
    cum_weights: Sequence[Sequence[float]],
    successor_idx: np.ndarray,
    n_users: int,
    min_history: int,
    mean_history: float,
    max_history: int,
    p_successor: float,
) -> dict[str, list[str]]:
    """One history per user: preferred subcategories, successors, moves between related subcategories."""
    member_lists = [m.tolist() for m in members]
    extra_mean = mean_history - min_history
    histories: dict[str, list[str]] = {}
    width = max(4, len(str(n_users - 1)))
    for u in range(n_users):
        prefs = [pyrng.randrange(grid.n_cat)]
        if pyrng.random() < 0.5:
            prefs.append(grid.complement(prefs[0]) if pyrng.random() < 0.5 else pyrng.randrange(grid.n_cat))
        length = min_history
        if extra_mean > 0:
            length += int(rng.geometric(1.0 / (extra_mean + 1.0)) - 1)
        length = min(length, max_history)
        seq = _one_history(
            pyrng, grid, item_sub, member_lists, cum_weights, successor_idx, prefs, length, p_successor
        )
        histories[f"U{u:0{width}d}"] = [item_ids[i] for i in seq]
    return histories


def _one_history(
    pyrng: random.Random,
    grid: _CategoryGrid,
    item_sub: np.ndarray,
    member_lists: Sequence[list[int]],
    cum_weights: Sequence[Sequence[float]],
    successor_idx: np.ndarray,
    prefs: Sequence[int],
    length: int,
    p_successor: float,
) -> list[int]:
    """Item indices of one user's history of (at most) `length` distinct items."""
    seen: set[int] = set()
    seq: list[int] = []
    current_sub = prefs[0]
    current_item = -1
    for _ in range(length):
        nxt = -1
        if current_item >= 0 and pyrng.random() < p_successor:
            cand = int(successor_idx[current_item])
            if cand not in seen:
                nxt = cand
        if nxt < 0:
            if current_item >= 0:
                r = pyrng.random()
                if r < 0.40:
                    pass  # stay in the subcategory
                elif r < 0.70:
                    current_sub = grid.complement(current_sub)
                elif r < 0.80:
                    current_sub = grid.cross(current_sub)
                elif r < 0.95:
                    current_sub = pyrng.choice(prefs)
                else:
                    current_sub = pyrng.randrange(grid.n_cat)
            pool, cum = member_lists[current_sub], cum_weights[current_sub]
            for _attempt in range(8):
                cand = pool[bisect.bisect_left(cum, pyrng.random() * cum[-1])]
                if cand not in seen:
                    nxt = cand
                    break
            if nxt < 0:  # the subcategory is exhausted for this user: any unseen item of a preference
                rest = [i for c in prefs for i in member_lists[c] if i not in seen] or [
                    i for i in range(len(item_sub)) if i not in seen
                ]
                if not rest:
                    break
                nxt = pyrng.choice(rest)
        seq.append(nxt)
        seen.add(nxt)
        current_item = nxt
        current_sub = int(item_sub[nxt])
    return seq
