"""Built-in DML methods, one module each; importing this package registers them all."""
from methods import (amsoftmax, arcface, contrastive, ms, nir, normsoftmax, pixels, proxyanchor,  # noqa: F401
                     proxynca, softtriple, triplet)
from methods import jrd  # noqa: F401,E402  (registers jrd, mrd, jrd_c, jrd_pool, jmmd, jrd_intra and the "jrd" recipe)
from methods import intra_batch, metrix  # noqa: F401,E402  (metrix_contrastive, metrix_ms, metrix_proxyanchor, intra_batch)
