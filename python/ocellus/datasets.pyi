from typing import Tuple

import numpy as np
import numpy.typing as npt

PATTERN_CLASSES: Tuple[str, ...]

def patterns(
    n_per_class: int = 100, seed: int = 0
) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The built-in patterns: X (N, 1, 28, 28) in [0, 1], y int64 class indices."""
