"""DownloadButton: one click makes a file in Python and the browser saves it.

ipywidgets has no download: a link to a data URL needs a second click after the
file is made, and embeds the file in the notebook. Here the button asks the kernel
for the file (a custom message), the kernel answers with its bytes as a binary
buffer, and the page saves them through a Blob URL that it revokes at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anywidget
import traitlets as t

from deepblock_nb.errors import ArgumentError

__all__ = ["DownloadButton"]

log = logging.getLogger(__name__)

#: Larger files are written to disk only (the page would hold them in memory twice).
MAX_DOWNLOAD_BYTES = 200_000_000

_ESM = """
export default {
  render({ model, el }) {
    const button = document.createElement("button");
    button.className = "jupyter-button";
    const msg = document.createElement("span");
    msg.style.marginLeft = "8px";
    const sync = () => {
      button.textContent = model.get("description");
      button.disabled = model.get("disabled") || model.get("busy");
      msg.textContent = model.get("status");
    };
    sync();
    model.on("change:description change:disabled change:busy change:status", sync);
    button.onclick = () => model.send({ event: "request" });
    model.on("msg:custom", (content, buffers) => {
      if (!content || content.event !== "file" || !buffers || !buffers.length) { return; }
      const blob = new Blob([buffers[0]], { type: content.mime || "application/octet-stream" });
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url; a.download = content.name || "download"; a.style.display = "none";
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    });
    el.append(button, msg);
  },
};
"""

Provider = Callable[[], tuple[str, bytes, str]]


class DownloadButton(anywidget.AnyWidget):  # type: ignore[misc]
    """A button whose click calls ``provider() -> (file name, bytes, MIME type)`` in
    the kernel and saves the result in the browser: one click, one file.

    ``status`` shows the outcome ("saved predictions.json (1,234 bytes)", or the
    error); ``downloads`` counts the files sent (for tests). A provider error is
    shown, not raised: the click came from the page.
    """

    _esm = _ESM
    description = t.Unicode("Download").tag(sync=True)
    disabled = t.Bool(False).tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    status = t.Unicode("").tag(sync=True)

    def __init__(self, provider: Provider, description: str = "Download", **kwargs: Any) -> None:
        if not callable(provider):
            raise ArgumentError(f"provider must be callable, not {type(provider).__name__}")
        super().__init__(description=description, **kwargs)
        self.provider = provider
        self.downloads = 0
        self.on_msg(self._on_message)

    def click(self) -> None:
        """What a click in the page does (also usable from a cell or a test)."""
        if self.disabled or self.busy:
            return
        self.busy = True
        try:
            name, data, mime = self.provider()
            if len(data) > MAX_DOWNLOAD_BYTES:
                self.status = (
                    f"{name} is {len(data):,} bytes: too large to download here; see the file on disk"
                )
                return
            self.send({"event": "file", "name": name, "mime": mime}, buffers=[data])
            self.downloads += 1
            self.status = f"saved {name} ({len(data):,} bytes)"
        except Exception as exc:  # shown in the page: there is no cell to raise into
            log.exception("download failed")
            self.status = f"download failed: {exc}"
        finally:
            self.busy = False

    def _on_message(self, _widget: Any, content: dict[str, Any], buffers: list[Any]) -> None:
        if isinstance(content, dict) and content.get("event") == "request":
            self.click()
