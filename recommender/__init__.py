"""Pure recommendation engine: interaction matrices, models, fallbacks, filters and artifacts."""

from recommender.base import ArtifactError, NotFittedError, Recommender, RecommenderError
from recommender.threads import pin_blas_threads

__all__ = [
    "ArtifactError",
    "NotFittedError",
    "Recommender",
    "RecommenderError",
    "pin_blas_threads",
]
