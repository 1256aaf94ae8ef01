"""Built-in DML methods, one module each; importing this package registers them all."""
from methods import amsoftmax, contrastive, ms, pixels, softtriple, triplet  # noqa: F401
from methods import jrd  # noqa: F401,E402  (registers jrd, mrd, jrd_c, jrd_pool, jmmd, jrd_intra and the "jrd" recipe)
