"""The learned anomaly score: an isolation forest over each event's baseline features.

The features (`warden.behavior.store.FEATURE_COLUMNS`) measure how new the event's action,
address, network, client, region and hour are for its identity, how rare its action,
client and network are among its peers, how new a failure of the action is for it, and
how little history the identity has. All lie in [0, 1] and are rounded to two decimals, so events share vectors:
the model scores each distinct vector once and the score is joined back to the events.

The model is fitted on a stored uniform sample of every vector ever seen
(`behavior_model_sample`), so an attack that fills one run does not become the norm the
run is judged against. Fitting uses a fixed seed: the same sample gives the same scores.

Scores are the isolation forest's anomaly score from its paper, 2^(-depth/c(n)): around
0.5 for ordinary events, towards 1 for events isolated in few splits. An event's drivers
are the features whose replacement by the sample's median lowers its score the most.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from warden.behavior.model import Driver
from warden.behavior.store import FEATURE_COLUMNS

if TYPE_CHECKING:
    import duckdb
    import numpy as np

MIN_SAMPLE = 64
TREES = 100
MAX_SAMPLES = 1024
SEED = 7

FEATURE_MEANINGS = {
    "action_novelty": "how new the action is for this identity (1: never called)",
    "address_novelty": "how new the source address is for this identity",
    "network_novelty": "how new the source network is for this identity",
    "agent_novelty": "how new the client (user-agent family) is for this identity",
    "region_novelty": "how new the region is for this identity",
    "hour_novelty": "how new the hour of day is for this identity",
    "action_peer_rarity": "how rare the action is among the identity's peers",
    "agent_peer_rarity": "how rare the client is among the identity's peers",
    "network_peer_rarity": "how rare the network is among the identity's peers",
    "failure_novelty": "how new a failure of this action is for this identity",
    "youth": "how little history the identity has",
    "surprise": "how many things are new at once for an identity with a history",
}


@dataclass
class AnomalyModel:
    forest: Any  # sklearn.ensemble.IsolationForest
    medians: np.ndarray
    sample_size: int

    def score(self, vectors: np.ndarray) -> np.ndarray:
        return -self.forest.score_samples(vectors)

    def drivers(self, vector: Sequence[float], limit: int = 3) -> list[Driver]:
        """Return the features that lift this vector's score above a typical event's.

        Each feature in turn is set to the sample's median, and the drop in score is its raw
        share. Raw shares overlap (two rare features isolate an event together), so they are
        scaled to add up to the vector's excess over the median vector's score. The largest
        come first.
        """
        import numpy as np

        base = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        variants = np.repeat(base, len(FEATURE_COLUMNS), axis=0)
        for index in range(len(FEATURE_COLUMNS)):
            variants[index, index] = self.medians[index]
        original = float(self.score(base)[0])
        typical = float(self.score(self.medians.reshape(1, -1).astype(np.float32))[0])
        drops = np.maximum(original - self.score(variants), 0.0)
        total = float(drops.sum())
        excess = max(original - typical, 0.0)
        if total <= 0.0 or excess <= 0.0:
            return []
        drivers = [
            Driver(
                feature=name,
                value=float(base[0, index]),
                contribution=float(drops[index]) / total * excess,
                meaning=FEATURE_MEANINGS[name],
            )
            for index, name in enumerate(FEATURE_COLUMNS)
            if drops[index] > 0.0
        ]
        drivers.sort(key=lambda driver: -driver.contribution)
        return [driver for driver in drivers if driver.contribution >= 0.01][:limit]


def fit(connection: duckdb.DuckDBPyConnection) -> AnomalyModel | None:
    """Fit the forest on the stored sample; None while the sample is too small to mean much."""
    import numpy as np
    from sklearn.ensemble import IsolationForest

    columns = ", ".join(FEATURE_COLUMNS)
    sample = connection.execute(
        f"SELECT {columns} FROM behavior_model_sample ORDER BY draw"  # noqa: S608
    ).fetchnumpy()
    size = len(sample[FEATURE_COLUMNS[0]])
    if size < MIN_SAMPLE:
        return None
    matrix = np.column_stack([sample[name].astype(np.float32) for name in FEATURE_COLUMNS])
    forest = IsolationForest(
        n_estimators=TREES, max_samples=min(MAX_SAMPLES, size), random_state=SEED
    )
    forest.fit(matrix)
    return AnomalyModel(forest, np.median(matrix, axis=0), size)


def score_events(connection: duckdb.DuckDBPyConnection, model: AnomalyModel) -> int:
    """Score every distinct feature vector of `behavior_scored` and store the scores.

    Returns the number of distinct vectors scored.
    """
    import numpy as np

    columns = ", ".join(FEATURE_COLUMNS)
    distinct = connection.execute(
        f"SELECT vector_hash, {columns} FROM behavior_scored "  # noqa: S608
        "GROUP BY ALL"
    ).fetchnumpy()
    hashes = distinct["vector_hash"]
    if len(hashes) == 0:
        return 0
    matrix = np.column_stack([distinct[name].astype(np.float32) for name in FEATURE_COLUMNS])
    scores = model.score(matrix)
    connection.register("behavior_vector_scores", {"vector_hash": hashes, "score": scores})
    try:
        connection.execute(
            "UPDATE behavior_scored SET score = v.score FROM behavior_vector_scores v "
            "WHERE behavior_scored.vector_hash = v.vector_hash"
        )
    finally:
        connection.unregister("behavior_vector_scores")
    return len(hashes)
