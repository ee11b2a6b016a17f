"""Undo/redo of box edits (and of decisions on proposals): commands that know how to undo and redo themselves.

A command acts through an *editor*, anything with the Project's box methods
(``add_box(image, category, xyxy) -> id``, ``update_box(id, xyxy=, category=)``,
``delete_box(id)``): the Project itself, or a Labeler that also keeps its
in-memory boxes in step. Re-adding a deleted box gives it a new id, so commands
name boxes by a *key* that stays fixed while the box's id changes; :class:`History`
maps keys to the current ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

__all__ = [
    "AcceptProposal",
    "AddBox",
    "Command",
    "DeleteBox",
    "Group",
    "History",
    "RejectProposals",
    "UpdateBox",
]


class BoxEditor(Protocol):
    def add_box(self, image: Any, category: Any, xyxy: Any, source: str = "manual") -> int: ...
    def update_box(self, box_id: int, xyxy: Any = None, category: Any = None) -> None: ...
    def delete_box(self, box_id: int) -> None: ...
    def accept_proposal(self, proposal: int, xyxy: Any, category: Any) -> int: ...
    def reject_proposals(self, image: Any, ids: Any) -> None: ...
    def reopen_proposals(self, ids: Any) -> None: ...


class _Ids:
    """Box key <-> current box id."""

    def __init__(self) -> None:
        self._id: dict[int, int] = {}  # key -> current id
        self._key: dict[int, int] = {}  # current id -> key
        self._next = 0

    def key(self, box_id: int) -> int:
        box_id = int(box_id)
        if box_id not in self._key:
            self._next += 1
            self._id[self._next], self._key[box_id] = box_id, self._next
        return self._key[box_id]

    def current(self, key: int) -> int:
        return self._id[key]

    def bind(self, key: int, box_id: int) -> None:
        self._id[key], self._key[int(box_id)] = int(box_id), key

    def drop(self, key: int) -> None:
        # the box is gone: a later box given the same id (SQLite may reuse it) is a new box
        self._key.pop(self._id[key], None)


@dataclass(frozen=True)
class AddBox:
    """A box was added; undo deletes it, redo adds it again (with a new id)."""

    image_id: int
    key: int
    category: int
    xyxy: tuple[float, float, float, float]
    kind: Literal["add"] = "add"

    def undo(self, editor: BoxEditor, ids: _Ids) -> None:
        editor.delete_box(ids.current(self.key))
        ids.drop(self.key)

    def redo(self, editor: BoxEditor, ids: _Ids) -> None:
        ids.bind(self.key, editor.add_box(self.image_id, self.category, np.array(self.xyxy)))


@dataclass(frozen=True)
class DeleteBox:
    """A box was deleted; undo adds one with the same geometry, category and source (a new id)."""

    image_id: int
    key: int
    category: int
    xyxy: tuple[float, float, float, float]
    source: str = "manual"
    kind: Literal["delete"] = "delete"

    def undo(self, editor: BoxEditor, ids: _Ids) -> None:
        box = editor.add_box(self.image_id, self.category, np.array(self.xyxy), source=self.source)
        ids.bind(self.key, box)

    def redo(self, editor: BoxEditor, ids: _Ids) -> None:
        editor.delete_box(ids.current(self.key))
        ids.drop(self.key)


@dataclass(frozen=True)
class UpdateBox:
    """A box was moved, resized or relabelled: old and new geometry and category."""

    image_id: int
    key: int
    kind: Literal["move", "resize", "relabel"]
    old_xyxy: tuple[float, float, float, float]
    new_xyxy: tuple[float, float, float, float]
    old_category: int
    new_category: int

    def undo(self, editor: BoxEditor, ids: _Ids) -> None:
        self._apply(editor, ids, self.old_xyxy, self.old_category)

    def redo(self, editor: BoxEditor, ids: _Ids) -> None:
        self._apply(editor, ids, self.new_xyxy, self.new_category)

    def _apply(self, editor: BoxEditor, ids: _Ids, xyxy: tuple[float, ...], category: int) -> None:
        if self.kind == "relabel":
            editor.update_box(ids.current(self.key), category=category)
        else:
            editor.update_box(ids.current(self.key), xyxy=np.array(xyxy))


@dataclass(frozen=True)
class AcceptProposal:
    """A proposal became a box (as proposed, or corrected to ``xyxy``/``category``); undo
    deletes the box and reopens the proposal, redo accepts it again (a new box id)."""

    image_id: int
    key: int
    proposal: int
    category: int
    xyxy: tuple[float, float, float, float]
    kind: Literal["accept"] = "accept"

    def undo(self, editor: BoxEditor, ids: _Ids) -> None:
        editor.delete_box(ids.current(self.key))
        ids.drop(self.key)
        editor.reopen_proposals([self.proposal])

    def redo(self, editor: BoxEditor, ids: _Ids) -> None:
        ids.bind(self.key, editor.accept_proposal(self.proposal, np.array(self.xyxy), self.category))


@dataclass(frozen=True)
class RejectProposals:
    """Proposals of an image were rejected; undo reopens them, redo rejects them again."""

    image_id: int
    proposals: tuple[int, ...]
    kind: Literal["reject"] = "reject"
    key: None = None  # names no box

    def undo(self, editor: BoxEditor, ids: _Ids) -> None:
        editor.reopen_proposals(list(self.proposals))

    def redo(self, editor: BoxEditor, ids: _Ids) -> None:
        editor.reject_proposals(self.image_id, list(self.proposals))


@dataclass(frozen=True)
class Group:
    """Several commands of one image made as one step ("accept all"): undone in reverse."""

    image_id: int
    commands: tuple[Any, ...]
    kind: str = "group"
    key: None = None

    def undo(self, editor: BoxEditor, ids: _Ids) -> None:
        for cmd in reversed(self.commands):
            cmd.undo(editor, ids)

    def redo(self, editor: BoxEditor, ids: _Ids) -> None:
        for cmd in self.commands:
            cmd.redo(editor, ids)


Command = AddBox | DeleteBox | UpdateBox | AcceptProposal | RejectProposals | Group


def _xyxy(a: Any) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in np.asarray(a, dtype=np.float64).reshape(4))
    return (x1, y1, x2, y2)


class History:
    """Undo and redo stacks of box edits, across images; a new edit clears redo.

    Record an edit after the project accepted it (``added``, ``deleted``,
    ``updated``); ``undo(editor)`` / ``redo(editor)`` apply the next command. A
    command that fails (its box was deleted elsewhere) is dropped and the error
    raised.
    """

    def __init__(self, limit: int = 500) -> None:
        self.limit = limit
        self._undo: list[Command] = []
        self._redo: list[Command] = []
        self._ids = _Ids()

    # -- recording ---------------------------------------------------------------
    def added(self, image_id: int, box_id: int, category: int, xyxy: Any) -> None:
        self._push(AddBox(int(image_id), self._ids.key(box_id), int(category), _xyxy(xyxy)))

    def deleted(self, image_id: int, box_id: int, category: int, xyxy: Any, source: str = "manual") -> None:
        key = self._ids.key(box_id)
        self._ids.drop(key)
        self._push(DeleteBox(int(image_id), key, int(category), _xyxy(xyxy), str(source)))

    def updated(
        self,
        image_id: int,
        box_id: int,
        kind: Literal["move", "resize", "relabel"],
        old: tuple[Any, int],
        new: tuple[Any, int],
    ) -> None:
        """``old`` / ``new``: ``(xyxy, category)`` before and after."""
        key = self._ids.key(box_id)
        self._push(
            UpdateBox(int(image_id), key, kind, _xyxy(old[0]), _xyxy(new[0]), int(old[1]), int(new[1]))
        )

    def accepted(self, image_id: int, box_id: int, proposal: int, category: int, xyxy: Any) -> None:
        """A proposal became box ``box_id`` of ``category`` at ``xyxy`` (as stored)."""
        self._push(
            AcceptProposal(int(image_id), self._ids.key(box_id), int(proposal), int(category), _xyxy(xyxy))
        )

    def rejected(self, image_id: int, proposals: Any) -> None:
        self._push(RejectProposals(int(image_id), tuple(int(i) for i in proposals)))

    def group(self, n: int, kind: str) -> None:
        """Make the last ``n`` recorded commands (of one image) one step named ``kind``."""
        if n < 1 or n > len(self._undo):
            return
        cmds = tuple(self._undo[-n:])
        del self._undo[-n:]
        self._undo.append(Group(cmds[0].image_id, cmds, kind))

    def _push(self, cmd: Command) -> None:
        self._undo.append(cmd)
        del self._undo[: -self.limit]
        self._redo.clear()

    # -- replaying -----------------------------------------------------------------
    @property
    def next_undo(self) -> Command | None:
        return self._undo[-1] if self._undo else None

    @property
    def next_redo(self) -> Command | None:
        return self._redo[-1] if self._redo else None

    def current_id(self, cmd: Command) -> int | None:
        """The box id the command acts on now (None while its box is deleted, or when it names none)."""
        if cmd.key is None:
            return None
        box_id = self._ids.current(cmd.key)
        return box_id if self._ids._key.get(box_id) == cmd.key else None

    def undo(self, editor: BoxEditor) -> Command | None:
        if not self._undo:
            return None
        cmd = self._undo.pop()
        cmd.undo(editor, self._ids)
        self._redo.append(cmd)
        return cmd

    def redo(self, editor: BoxEditor) -> Command | None:
        if not self._redo:
            return None
        cmd = self._redo.pop()
        cmd.redo(editor, self._ids)
        self._undo.append(cmd)
        return cmd

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
