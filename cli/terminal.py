"""Terminal presentation: token heatmaps and tables with rich. Text is always rendered as text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.text import Text

if TYPE_CHECKING:  # numpy loads with the first heatmap, not with the command line
    import numpy as np


def token_heatmap(
    tokens: Sequence[str], acts: np.ndarray, vmax: float | None = None, mark: int | None = None
) -> Text:
    """Tokens with a background whose strength follows the activation (green up, red down).

    ``mark`` underlines one position (the max token). Newlines and tabs are shown as escapes.
    """
    import numpy as np

    acts = np.asarray(acts, dtype=float)
    scale = vmax if vmax else float(np.abs(acts).max() or 1.0)
    out = Text()
    for i, (tok, a) in enumerate(zip(tokens, acts, strict=True)):
        x = max(-1.0, min(1.0, a / scale)) if scale else 0.0
        level = int(40 + 180 * abs(x))
        bg = f"rgb(0,{level},0)" if x >= 0 else f"rgb({level},0,0)"
        if abs(x) < 0.05:
            bg = "default"
        style = f"on {bg}" + (" underline bold" if i == mark else "")
        out.append(tok.replace("\n", "\\n").replace("\t", "\\t"), style=style)
    return out
