"""Keyed hashing of categorical values before they are sketched or journaled (config ``privacy``).

The service hashes each decoded batch once; the journal stores batches, so raw values reach neither the
sketches nor the disk.

HMAC-SHA256 with a secret key, truncated to 16 hex characters (64 bits: collisions are negligible for the
category counts a frequent-items sketch holds). Without the key the raw value cannot be recovered or
guessed by hashing candidates; with it, a known value can still be looked up (``hash_category``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

import numpy as np

from otel_ml import semconv
from otel_ml.decode.batch import ColumnarBatch, LabelBatch


@dataclass(frozen=True)
class PrivacyConfig:
    """Keyed hashing (HMAC-SHA256) of categorical values before they are sketched: sketches, baselines and
    metrics then never hold the raw values (e-mail addresses, user ids). Drift statistics are unchanged,
    because hashing keeps categories distinct. Baselines must be built with the same key
    (``otel-ml baseline build --hash-key-env``)."""

    hash_key_env: str | None = None
    """Name of the environment variable holding the key; unset: no hashing."""
    hash_features: list[str] = field(default_factory=list)
    """Features to hash; empty: every categorical feature."""


HASH_PREFIX = "h:"


def hash_category(value: str, key: bytes) -> str:
    """The hashed form of one category.

    >>> hash_category("alice@example.com", b"k")
    'h:8647c46883247f15'
    """
    return HASH_PREFIX + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:16]


def hash_categories(values: np.ndarray, key: bytes) -> np.ndarray:
    """Hash every non-missing value of a string column, once per distinct value."""
    if not len(values):
        return values
    uniq, inverse = np.unique(values, return_inverse=True)
    hashed = np.array(["" if u == "" else hash_category(u, key) for u in uniq.tolist()])
    return hashed[inverse]


PLAIN_CLASSES = frozenset({"1", "0", "true", "false", "yes", "no", "positive", "negative", "pos", "neg"})
"""Class names (any case) that are never hashed in the prediction and in labels: they carry nothing private, and
they name a binary classifier's positive class (profile/performance.py: ``POSITIVE_NAMES``) without one being
configured. Every other text class is hashed, on both sides of the join alike."""


def hash_classes(values: np.ndarray, key: bytes) -> np.ndarray:
    """Text classes (predictions, labels) hashed like categories, except ``PLAIN_CLASSES``.

    >>> hash_classes(np.array(["Yes", "churn", ""]), b"k").tolist()[::2]
    ['Yes', '']
    """
    if not len(values):
        return values
    uniq, inverse = np.unique(values, return_inverse=True)
    hashed = np.array(["" if u == "" else u if u.lower() in PLAIN_CLASSES else hash_category(u, key)
                       for u in uniq.tolist()])
    return hashed[inverse]


def hashes_prediction(features: list[str] | None) -> bool:
    """Whether ``privacy.hash_features`` (empty: every categorical feature) hashes the prediction, and so labels."""
    return not features or semconv.PREDICTION_FEATURE in features


def hash_batch(batch: ColumnarBatch, key: bytes, features: list[str] | None = None) -> None:
    """Replace the categorical columns of ``batch`` (all, or those in ``features``) by their hashes (the
    prediction by ``hash_classes``). Numbers in a categorical feature stay numbers: profiles turn them into
    category text later, so hash only string-typed features, or send identifiers as strings."""
    for name, col in batch.categorical.items():
        if not features or name in features:
            batch.categorical[name] = hash_classes(col, key) if name == semconv.PREDICTION_FEATURE else \
                hash_categories(col, key)


def hash_labels(labels: LabelBatch, key: bytes) -> None:
    """Hash a label batch's text classes as the prediction's are, before they are joined or written anywhere; its
    ids as sent are dropped (a label that does not join is then shown without them)."""
    labels.label = hash_classes(labels.label, key)
    labels.id_text = None


def load_key(env_var: str | None) -> bytes | None:
    if not env_var:
        return None
    value = os.environ.get(env_var)
    if not value:
        raise ValueError(f"privacy: the hash key variable {env_var} is not set")
    return value.encode()
