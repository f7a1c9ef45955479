"""Pure recommendation engine: interaction matrices, models, fallbacks, filters and artifacts."""

from recommender.base import ArtifactError, NotFittedError, Recommender, RecommenderError, load_model
from recommender.threads import pin_blas_threads

__all__ = [
    "ArtifactError",
    "NotFittedError",
    "Recommender",
    "RecommenderError",
    "load_model",
    "pin_blas_threads",
]
