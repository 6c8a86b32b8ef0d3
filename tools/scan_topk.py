"""The corpus scan's running top-k (or bottom-k) windows of every neuron of a layer, on the
model's device (``tools/scan.py``): a bounded heap vectorised over all neurons.

Each neuron has ``keep`` slots. Until they are full, a batch is merged with ``torch.topk`` over
the slots and the batch. After, ``topk`` over the slots' values and the batch's per-window maxima
says which windows enter; only those are written, into the slots they evict, with the position
of their peak. The slots are put in order once, at the end (``ordered``). Once a scan is warm
few windows enter a batch, so a batch costs little beyond its per-window max.
"""

from __future__ import annotations

import numpy as np
import torch


class WindowTopK:
    """Running top-k (``largest``) or bottom-k windows per neuron (module docstring)."""

    def __init__(self, keep: int, largest: bool):
        self.keep, self.largest = keep, largest
        # (k, d) values, windows and positions, (k, d, T) activations: None until the first merge
        self.val: torch.Tensor | None = None
        self.win: torch.Tensor | None = None
        self.pos: torch.Tensor | None = None
        self.acts: torch.Tensor | None = None

    def _peak(self, rows: torch.Tensor) -> torch.Tensor:
        """Position of the max (min) in each window of ``rows`` (..., T)."""
        return rows.argmax(-1) if self.largest else rows.argmin(-1)

    def merge(self, acts: torch.Tensor, val: torch.Tensor, w0: int) -> None:
        # acts: (B, T, d) float32; val: (B, d) each window's max (min)
        if self.val is None or self.val.shape[0] < self.keep:
            self._fill(acts, val, w0)
            return
        assert self.win is not None and self.pos is not None and self.acts is not None
        k = self.keep
        weakest = self.val.amin(0) if self.largest else self.val.amax(0)
        beats = val > weakest if self.largest else val < weakest  # (B, d)
        if not bool(beats.any()):
            return
        sel = torch.cat([self.val, val]).topk(k, dim=0, largest=self.largest).indices  # (k, d)
        new = sel >= k  # rows of sel that are batch windows
        kept = torch.zeros(k + 1, val.shape[1], dtype=torch.bool, device=val.device)
        kept.scatter_(0, torch.where(new, k, sel), True)
        # pair the n-th evicted slot of a neuron with its n-th entering window
        freed = (~kept[:k]).to(torch.int8).sort(dim=0, descending=True, stable=True).indices
        entering = new.to(torch.int8).sort(dim=0, descending=True, stable=True).indices
        m = new.sum(0)  # (d,) windows entering each neuron
        rows = int(m.max())
        live = torch.arange(rows, device=val.device).unsqueeze(1) < m  # (rows, d)
        slot = freed[:rows][live]
        neuron = live.nonzero()[:, 1]
        b = sel.gather(0, entering[:rows])[live] - k  # the batch window entering
        got = acts[b, :, neuron]  # (M, T)
        self.val[slot, neuron] = val[b, neuron]
        self.win[slot, neuron] = (w0 + b).to(self.win.dtype)
        self.pos[slot, neuron] = self._peak(got)
        self.acts[slot, neuron] = got

    def _fill(self, acts: torch.Tensor, val: torch.Tensor, w0: int) -> None:
        B, T, d = acts.shape
        win = torch.arange(w0, w0 + B, device=acts.device).view(B, 1).expand(B, d)
        per_tok = acts.transpose(1, 2)  # (B, d, T)
        if self.val is not None:
            assert self.win is not None and self.acts is not None
            val = torch.cat([self.val, val])
            win = torch.cat([self.win, win])
            per_tok = torch.cat([self.acts, per_tok])
        k = min(self.keep, val.shape[0])
        self.val, sel = val.topk(k, dim=0, largest=self.largest)  # (k, d)
        self.win = win.gather(0, sel)
        self.acts = per_tok.gather(0, sel.unsqueeze(-1).expand(k, d, T))  # (k, d, T)
        self.pos = self._peak(self.acts)

    def ordered(self) -> dict[str, np.ndarray]:
        """The kept windows, best first (ties: the earlier window first)."""
        assert self.val is not None and self.win is not None
        by_win = self.win.argsort(dim=0, stable=True)
        val = self.val.gather(0, by_win)
        by_val = val.argsort(dim=0, descending=self.largest, stable=True)
        order = by_win.gather(0, by_val)  # (k, d)
        out = {k: getattr(self, k).gather(0, order) for k in ("val", "win", "pos")}
        assert self.acts is not None
        T = self.acts.shape[-1]
        out["acts"] = self.acts.gather(0, order.unsqueeze(-1).expand(-1, -1, T))
        return {k: v.cpu().numpy() for k, v in out.items()}

    STATE = ("val", "win", "pos", "acts")

    def state(self) -> dict[str, np.ndarray]:
        return {} if self.val is None else {k: getattr(self, k).cpu().numpy() for k in self.STATE}

    def restore(self, state: dict[str, np.ndarray], device: torch.device) -> None:
        for k in self.STATE:
            if k in state:
                setattr(self, k, torch.as_tensor(state[k], device=device))
