"""The Labeler's keyboard map: one key event of the focused canvas -> one Labeler action."""

from __future__ import annotations

from typing import Any

__all__ = ["SHORTCUTS", "on_key"]

SHORTCUTS = (
    "keys (click the image first; click outside it to give the keys back to the notebook): "
    "d draw &middot; s select &middot; h pan &middot; 1-9 category (relabels the selected box) &middot; "
    "Delete/Backspace delete (a proposal: reject) &middot; a/Enter accept the proposal &middot; "
    "Shift+A accept all in view &middot; r reject the proposal &middot; Esc cancel/deselect &middot; t tile under the pointer done/not done &middot; "
    "n/&rarr; next &middot; p/&larr; previous &middot; "
    "Ctrl+Z undo &middot; Ctrl+Shift+Z/Ctrl+Y redo &middot; +/- zoom &middot; 0/f fit"
)


def on_key(lab: Any, key: str, shift: bool = False, ctrl: bool = False, meta: bool = False) -> None:
    """Run the action of ``key`` (a browser ``KeyboardEvent.key``) on a Labeler."""
    if ctrl or meta:
        if key.lower() == "z" and not shift:
            lab.undo()
        elif key.lower() in ("z", "y"):
            lab.redo()
        return  # other browser/notebook combinations are not ours
    layer = lab.proposals_layer
    if key in ("Delete", "Backspace", "r") and layer.selected is not None:
        layer.reject_selected()
    elif key in ("Delete", "Backspace"):
        lab.delete_selected()
    elif key in ("a", "Enter"):
        layer.accept_selected()
    elif key == "A":
        layer.accept_all()
    elif key == "Escape":
        lab.cancel_drag()
        lab.select(None)
        layer.select(None)
    elif key in ("+", "="):
        lab.view.zoom(1.5)
    elif key == "-":
        lab.view.zoom(1 / 1.5)
    elif key in ("0", "f"):
        lab.view.fit_view()
    elif len(key) == 1 and key in "123456789":
        ids = [i for _, i in lab.category.options]
        if int(key) <= len(ids):
            lab.category.value = ids[int(key) - 1]  # relabels a selected box in select mode
    elif key in ("d", "s", "h"):
        lab.mode.value = {"d": "draw", "s": "select", "h": "pan"}[key]
    elif key == "t":
        lab.tiles_review.toggle()  # the tile under the pointer
    elif key in ("ArrowRight", "n"):
        lab.step(1)
    elif key in ("ArrowLeft", "p", "b"):
        lab.step(-1)
