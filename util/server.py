"""A local detection server: FastAPI app + uvicorn, one model behind a batching queue.

    app = create_app(predict, category_names, ServerLimits(), model_name="demo")
    serve(app, host="127.0.0.1", port=8000)

`predict(images, threshold, topk, nms) -> [Detections]` is passed in (tools/serve.py gives
the Detector), so this module needs nothing above util/. Endpoints:

* `POST /predict[?threshold=&topk=&nms=]`: one image as the raw body, or several as
  multipart form files (`curl -F image=@a.jpg -F image=@b.jpg`); JSON
  `{"images": [{"file", "boxes" (xyxy pixels), "scores", "labels", "names", "width", "height"}], "time_ms"}`.
* `GET /health`: JSON status (model, classes, requests waiting, batches run).
* `GET /`: a web page: drop an image, see the boxes and names drawn over it, a threshold slider.

Limits (ServerLimits): bytes per request, pixels per image, images per request, seconds per
request, requests waiting. A request over a limit, or an upload that is not a readable image
(empty, not an image, truncated), gets a 4xx with {"error": one line}; a request that waits
too long gets 503; the server keeps serving. All images go through one BatchQueue
(util/batching.py): concurrent requests are queued and batched, the model runs once at a time.
"""
from __future__ import annotations

import asyncio
import io
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from fastapi import Request  # at module level: FastAPI reads the endpoints' annotations from here
from PIL import Image, ImageOps

from util.batching import BatchQueue, QueueFull

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "server_page.html")
Predict = Callable[[List[Image.Image], float, Optional[int], Optional[float]], Sequence[Any]]


@dataclass
class ServerLimits:
    """What one request may ask of the server."""
    max_upload_bytes: int = 20 * 1024 * 1024   # the whole request body
    max_pixels: int = 40_000_000               # per image (width x height)
    max_images: int = 16                       # per request
    timeout_s: float = 30.0                    # from arrival to answer
    max_batch: int = 4                         # images per forward pass
    max_queued: int = 64                       # images waiting for the model


class UploadError(Exception):
    """A request the server refuses: HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def decode_upload(data: bytes, name: str, limits: ServerLimits) -> Image.Image:
    """The upright RGB image in `data`, or UploadError: empty, not an image, too many pixels
    (checked from the header, before any pixel is decoded), truncated or corrupt."""
    if not data:
        raise UploadError(400, f"{name}: the upload is empty (0 bytes); send an image file (JPEG, PNG, ...)")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # PIL's own guard, for sizes far over any sane limit
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{found.group(1)} pixels" if found else "its size"
        raise UploadError(413, f"{name}: {size} is over this server's limit of {limits.max_pixels} pixels "
                               f"(--max_pixels); send a smaller image") from None
    except Exception:  # noqa: BLE001 - PIL's ways of not recognising a file
        raise UploadError(400, f"{name}: not an image PIL can read ({len(data)} bytes); send JPEG, PNG, BMP, "
                               f"TIFF or WebP") from None
    w, h = image.size
    if w * h > limits.max_pixels:
        raise UploadError(413, f"{name}: {w}x{h} pixels is over this server's limit of {limits.max_pixels} pixels "
                               f"(--max_pixels); send a smaller image")
    try:
        image.load()
        return ImageOps.exif_transpose(image).convert("RGB")
    except Exception as exc:  # noqa: BLE001 - truncated data, bad codec payloads
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UploadError(400, f"{name}: the image is truncated or corrupt ({text})") from None


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 without being kept.

    The rest of such a body is read and dropped, up to `DRAIN_FACTOR` times the limit,
    before the answer goes out: a server that closes the connection while the client is
    still sending makes the client see "connection reset" instead of the 413 and its reason.
    A body larger still is answered at once (its client may see the reset).
    """

    DRAIN_FACTOR = 4

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)
        self.drain_bytes = self.DRAIN_FACTOR * self.max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            if int(declared) <= self.drain_bytes:
                await _drain(receive, self.drain_bytes)
            return await _send_error(send, 413, self._reason(int(declared)))
        seen, started, body_done = 0, False, False

        async def counted_receive():
            nonlocal seen, body_done
            message = await receive()
            seen += len(message.get("body", b""))
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            if seen > self.max_bytes:
                raise UploadError(413, self._reason(seen))
            return message

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except UploadError as exc:
            if not started:
                if not body_done:
                    await _drain(receive, self.drain_bytes - seen)
                await _send_error(send, exc.status, exc.reason)

    def _reason(self, size: int) -> str:
        return (f"the request holds more than {self.max_bytes} bytes ({size}); this server takes at most "
                f"{self.max_bytes // (1024 * 1024)} MB per request (--max_upload_mb)")


async def _drain(receive, budget: int) -> None:
    """Read and drop the rest of a request body, at most about `budget` bytes of it."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _send_error(send, status: int, reason: str) -> None:
    import json
    body = json.dumps({"error": reason}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


async def read_uploads(request, limits: ServerLimits) -> List[Tuple[str, bytes]]:
    """(name, bytes) of each image of a request: multipart form files, else the raw body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=limits.max_images, max_fields=limits.max_images + 16)
        except UploadError:
            raise
        except Exception as exc:  # noqa: BLE001 - malformed multipart bodies, too many parts
            detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
            raise UploadError(400, f"the multipart form cannot be read: {str(detail).splitlines()[0]}") from None
        files = [(value.filename or key, await value.read()) for key, value in form.multi_items()
                 if hasattr(value, "read")]
        if not files:
            raise UploadError(400, "the form holds no file; send images as file fields (curl -F image=@photo.jpg)")
    else:
        files = [("upload", await request.body())]
    if len(files) > limits.max_images:
        raise UploadError(413, f"{len(files)} images in one request; this server takes at most {limits.max_images}")
    return files


def _check_params(threshold: float, topk: Optional[int], nms: Optional[float]) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise UploadError(400, f"threshold={threshold}: a score threshold lies in [0, 1]")
    if topk is not None and topk < 1:
        raise UploadError(400, f"topk={topk}: keep at least 1 detection")
    if nms is not None and not 0.0 <= nms <= 1.0:
        raise UploadError(400, f"nms={nms}: an IoU threshold lies in [0, 1] (0 turns it off)")


def batch_runner(predict: Predict) -> Callable[[List[Tuple[Image.Image, tuple]]], List[Any]]:
    """predict_batch for the BatchQueue: items (image, (threshold, topk, nms)) grouped by their settings."""
    def run(items: List[Tuple[Image.Image, tuple]]) -> List[Any]:
        out: List[Any] = [None] * len(items)
        groups: Dict[tuple, List[int]] = {}
        for i, (_, params) in enumerate(items):
            groups.setdefault(params, []).append(i)
        for (threshold, topk, nms), idx in groups.items():
            for i, result in zip(idx, predict([items[i][0] for i in idx], threshold, topk, nms)):
                out[i] = result
        return out
    return run


def create_app(predict: Predict, category_names: Mapping[int, str], limits: Optional[ServerLimits] = None,
               model_name: str = "model", default_threshold: float = 0.3, default_nms: float = 0.7):
    """The FastAPI app (with the body-size middleware around it); app.state.queue is its BatchQueue."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    limits = limits or ServerLimits()
    queue = BatchQueue(batch_runner(predict), limits.max_batch, max_queued=limits.max_queued)
    with open(PAGE, encoding="utf-8") as f:
        page = f.read().replace("{{THRESHOLD}}", f"{default_threshold:g}").replace("{{MODEL}}", _html(model_name))
    app = FastAPI(title="DINO detection server", docs_url=None, redoc_url=None)
    app.state.queue, app.state.limits = queue, limits

    @app.exception_handler(UploadError)
    async def _refused(_request, exc: UploadError):
        return JSONResponse({"error": exc.reason}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _bad_params(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid value')}"}, status_code=422)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> Dict[str, Any]:
        return {"status": "ok", "model": model_name, "classes": len(category_names), "waiting": queue.waiting,
                "batches": queue.stats["batches"], "images": queue.stats["items"]}

    @app.post("/predict")
    async def predict_endpoint(request: Request, threshold: float = default_threshold, topk: Optional[int] = 100,
                               nms: Optional[float] = default_nms) -> Dict[str, Any]:
        start = time.monotonic()
        _check_params(threshold, topk, nms)
        uploads = await read_uploads(request, limits)
        images = [await run_in_threadpool(decode_upload, data, name, limits) for name, data in uploads]
        results = await _queued(queue, [(im, (threshold, topk, nms or None)) for im in images],
                                limits.timeout_s - (time.monotonic() - start))
        return {"images": [{"file": name, **r.to_dict()} for (name, _), r in zip(uploads, results)],
                "time_ms": round(1000 * (time.monotonic() - start), 1)}

    app.router.on_shutdown.append(lambda: queue.close())
    return BodyLimit(app, limits.max_upload_bytes)


async def _queued(queue: BatchQueue, items: List[tuple], timeout: float) -> List[Any]:
    """Results of `items` through the queue; 503 when it is full or the answer takes too long."""
    futures = []
    try:
        for item in items:
            futures.append(queue.submit(item))
    except QueueFull as exc:
        for fut in futures:
            fut.cancel()
        raise UploadError(503, f"the server is busy ({exc}); try again shortly") from None
    try:
        return await asyncio.wait_for(asyncio.gather(*[asyncio.wrap_future(f) for f in futures]),
                                      max(0.001, timeout))
    except asyncio.TimeoutError:
        for fut in futures:
            fut.cancel()
        raise UploadError(503, "the answer took longer than this server's time limit per request "
                               "(--timeout); try again, or send fewer or smaller images") from None


def _html(text: str) -> str:
    import html
    return html.escape(str(text))


def serve(app, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Run `app` with uvicorn until interrupted (Ctrl-C)."""
    import uvicorn
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=5, limit_concurrency=256)
