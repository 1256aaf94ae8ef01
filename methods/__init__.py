"""Built-in DML methods, one module each; importing this package registers them all."""
from methods import amsoftmax, contrastive, ms, pixels, softtriple, triplet  # noqa: F401
