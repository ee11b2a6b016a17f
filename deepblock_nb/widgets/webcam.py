"""Webcam: capture one frame from the browser's camera and send it to Python as PNG bytes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anywidget
import traitlets as t

__all__ = ["Webcam"]

log = logging.getLogger(__name__)

_ESM = """
export default {
  render({ model, el }) {
    const video = document.createElement("video");
    video.autoplay = true; video.playsInline = true; video.muted = true;
    video.style.maxWidth = "320px"; video.style.display = "none";
    const start = document.createElement("button");
    start.textContent = "Start camera"; start.className = "jupyter-button";
    const snap = document.createElement("button");
    snap.textContent = "Capture"; snap.className = "jupyter-button"; snap.disabled = true;
    const msg = document.createElement("span");
    msg.style.marginLeft = "8px";
    let stream = null;
    start.onclick = async () => {
      try {
        stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
        video.srcObject = stream; video.style.display = "block"; snap.disabled = false;
        msg.textContent = "";
      } catch (err) {
        msg.textContent = "camera unavailable: " + err;
        model.send({ event: "error", message: String(err) });
      }
    };
    snap.onclick = () => {
      const c = document.createElement("canvas");
      c.width = video.videoWidth; c.height = video.videoHeight;
      if (!c.width || !c.height) { msg.textContent = "the camera has no picture yet"; return; }
      c.getContext("2d").drawImage(video, 0, 0);
      c.toBlob(async (blob) => {
        const buffer = await blob.arrayBuffer();
        model.send({ event: "frame", width: c.width, height: c.height }, undefined, [buffer]);
        msg.textContent = "captured " + c.width + " x " + c.height;
      }, "image/png");
    };
    const bar = document.createElement("div");
    bar.append(start, snap, msg);
    el.append(bar, video);
    return () => { if (stream) { stream.getTracks().forEach((track) => track.stop()); } };
  },
};
"""


class Webcam(anywidget.AnyWidget):  # type: ignore[misc]
    """ "Start camera" and "Capture" buttons; each capture calls the ``on_frame`` callbacks with PNG bytes.

    The browser sends ``{"event": "frame", "width": w, "height": h}`` with the PNG as
    a binary buffer; ``{"event": "error", "message": ...}`` when the camera is refused.
    """

    _esm = _ESM
    error = t.Unicode("").tag(sync=False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._frame_callbacks: list[Callable[[bytes], None]] = []
        self.frames = 0
        self.on_msg(self._on_message)

    def on_frame(self, callback: Callable[[bytes], None]) -> None:
        """Call ``callback(png_bytes)`` for every captured frame."""
        self._frame_callbacks.append(callback)

    def _on_message(self, _widget: Any, content: dict[str, Any], buffers: list[Any]) -> None:
        event = content.get("event") if isinstance(content, dict) else None
        if event == "error":
            self.error = str(content.get("message", ""))
        elif event == "frame" and buffers:
            data = bytes(buffers[0])
            self.frames += 1
            for cb in list(self._frame_callbacks):
                cb(data)
