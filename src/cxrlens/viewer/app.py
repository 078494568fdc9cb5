"""The viewer's FastAPI app: HTML pages (plain HTML/CSS/JS from ``static/``), a JSON API under ``/api`` and images.

The app only reads the workspace (through :class:`cxrlens.viewer.data.WorkspaceData`); the one thing it computes is
a report for an uploaded image (``POST /api/upload``, bounded by :attr:`ViewerConfig.upload_limit_bytes`), and the
one thing it writes is the thumbnail cache. Every refused request is a 4xx JSON ``{"error": "<one line>"}``; an
unexpected failure is a 500 with a generic message (the traceback goes to the server log, never to the client).
Requests whose ``Host`` is not the bound host or a loopback name are refused (DNS-rebinding guard).
"""

from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cxrlens import __version__
from cxrlens.errors import BadInputError
from cxrlens.report.run import ReportModel
from cxrlens.viewer.config import ViewerConfig
from cxrlens.viewer.data import FeatureQuery, WorkspaceData, check_name
from cxrlens.viewer.errors import BadRequest, Forbidden, NotFound, TooLarge, UnsupportedType, ViewerError
from cxrlens.viewer.thumbs import ThumbCache, mask_overlay_png

__all__ = ["PAGES", "UPLOAD_TYPES", "create_app", "serve"]

STATIC = Path(__file__).parent / "static"
PAGES = ("/", "/features", "/studies", "/search", "/analysis", "/upload")
UPLOAD_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "application/dicom": ".dcm"}
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
log = logging.getLogger("cxrlens.viewer")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _host_name(header: str) -> str:
    """The host of a ``Host`` header without its port (``[::1]:8765`` → ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _validation_message(exc: RequestValidationError) -> str:
    """One line naming the parameter and the problem, e.g. ``query parameter 'limit': must be ≤ 500``."""
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        where = {"query": "query parameter", "path": "path parameter", "body": "request body", "header": "header"}
        kind = where.get(loc[0], loc[0]) if loc else "parameter"
        name = ".".join(loc[1:]) or "?"
        parts.append(f"{kind} {name!r}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


class _Models:
    """Report models for uploads, loaded once per interpretation run (loading embeds every description)."""

    def __init__(self, data: WorkspaceData) -> None:
        self.data = data
        self.models: dict[str, ReportModel] = {}
        self.lock = threading.Lock()

    def get(self, run: str) -> ReportModel:
        with self.lock:
            if run not in self.models:
                self.models[run] = ReportModel.load(self.data.ws, run)
            return self.models[run]


def create_app(workspace: str | Path, config: ViewerConfig | None = None) -> FastAPI:
    """The viewer app over ``workspace`` (which must exist)."""
    cfg = config or ViewerConfig()
    root = Path(workspace).expanduser()
    if not root.is_dir():
        raise BadInputError(root, "workspace directory not found")
    data = WorkspaceData(root)
    thumbs = ThumbCache(data.root / cfg.cache_dir)
    models = _Models(data)
    index_html = (STATIC / "index.html").read_bytes()

    app = FastAPI(
        title="cxrlens viewer",
        version=__version__,
        description="Read-only view of a cxrlens workspace: features, reports with evidence, search, analysis.",
        docs_url=None,  # Swagger UI loads from a CDN; the schema itself is at /api/openapi.json
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.config = cfg
    app.state.data = data
    any_host = cfg.host in ("0.0.0.0", "::")  # bound to every interface: the user chose to expose it
    hosts = {"127.0.0.1", "localhost", "::1", cfg.host.strip("[]"), "testserver"}

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        host = _host_name(request.headers.get("host", ""))
        if not any_host and host not in hosts:
            response: Response = _error(
                400, f"host {host!r} not allowed: open the viewer as http://127.0.0.1:{cfg.port}/ (or bind --host)"
            )
        else:
            response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(ViewerError)
    async def _viewer_error(request: Request, exc: ViewerError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such page or endpoint: {request.url.path}"
        return _error(exc.status_code, message)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("viewer: %s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal error while answering this request (details are in the server log)")

    # ------------------------------------------------------------------------------------------------ pages
    def _page() -> Response:
        return Response(index_html, media_type="text/html; charset=utf-8")

    for path in PAGES:
        app.add_api_route(path, _page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/feature/{run}/{feature}", _page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/study/{run}/{image_id}", _page, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # -------------------------------------------------------------------------------------------------- api
    @app.get("/api/overview", tags=["workspace"])
    def overview() -> dict[str, Any]:
        """Datasets, interpretation runs, report runs with their headline metrics, analysis runs, search indexes."""
        return data.overview()

    @app.get("/api/config", tags=["workspace"])
    def viewer_config() -> dict[str, Any]:
        """The limits a client should respect (page sizes, thumbnail size, upload limit)."""
        return {
            "page_size": cfg.page_size,
            "max_page_size": cfg.max_page_size,
            "thumb_size": cfg.thumb_size,
            "uploads": cfg.uploads,
            "upload_limit_bytes": cfg.upload_limit_bytes,
            "upload_types": sorted(UPLOAD_TYPES),
        }

    @app.get("/api/interpret/{run}/features", tags=["features"])
    def features(
        run: str,
        sort: str = Query("frequency", description="feature, frequency, n_active, max, auc, score, confidence, …"),
        order: str = Query("desc", pattern="^(asc|desc)$"),
        q: str = Query("", max_length=200, description="substring of the description or best label"),
        label: str = Query("", max_length=100, description="best label equals"),
        described: bool | None = Query(None),
        min_frequency: float | None = Query(None, ge=0, le=1),
        min_auc: float | None = Query(None, ge=0, le=1),
        offset: int = Query(0, ge=0, le=10_000_000),
        limit: int = Query(cfg.page_size, ge=1, le=cfg.max_page_size),
    ) -> dict[str, Any]:
        """One page of the feature table (sorted and filtered on the server)."""
        check_name(run, "interpretation run")
        query = FeatureQuery(sort, order, q, label, described, min_frequency, min_auc, offset, limit)
        return data.features_page(run, query)

    @app.get("/api/interpret/{run}/labels", tags=["features"])
    def feature_labels(run: str) -> list[str]:
        """The distinct best labels of a run's features."""
        check_name(run, "interpretation run")
        return data.feature_labels(run)

    @app.get("/api/interpret/{run}/features/{feature}", tags=["features"])
    def feature(run: str, feature: int) -> dict[str, Any]:
        """One feature: description, top images with heatmaps, non-activating images, labels, histogram."""
        check_name(run, "interpretation run")
        if feature < 0:
            raise BadRequest(f"feature must be ≥ 0, got {feature}")
        return data.feature(run, feature)

    @app.get("/api/reports/{run}/studies", tags=["reports"])
    def studies(
        run: str,
        q: str = Query("", max_length=200),
        offset: int = Query(0, ge=0, le=10_000_000),
        limit: int = Query(cfg.page_size, ge=1, le=cfg.max_page_size),
    ) -> dict[str, Any]:
        """One page of a report run's studies."""
        check_name(run, "report run")
        return data.studies_page(run, q, offset, limit)

    @app.get("/api/reports/{run}/studies/{image_id}", tags=["reports"])
    def study(run: str, image_id: str) -> dict[str, Any]:
        """One study: generated report with evidence per sentence, reference report, labels, ground truth."""
        check_name(run, "report run")
        return data.study(run, image_id)

    @app.get("/api/images/{dataset}/{image_id}", tags=["images"], response_class=FileResponse)
    def image(dataset: str, image_id: str, size: int = Query(cfg.thumb_size, ge=32, le=1024)) -> FileResponse:
        """A thumbnail (PNG, longer side ``size``) of an image of a dataset; cached in the workspace."""
        check_name(dataset, "dataset")
        source = data.image_path(dataset, image_id)
        try:
            path = thumbs.get(source, size)
        except (BadInputError, OSError, ValueError) as exc:
            raise NotFound(f"image {image_id!r} is not readable ({type(exc).__name__})") from None
        # revalidated by ETag: a changed image gets a new thumbnail at the same URL
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})

    @app.get("/api/masks/{dataset}/{image_id}", tags=["images"])
    def mask(dataset: str, image_id: str, label: str = Query(..., max_length=100)) -> Response:
        """A phantom ground-truth mask as a transparent PNG overlay."""
        check_name(dataset, "dataset")
        return Response(mask_overlay_png(data.mask(dataset, image_id, label)), media_type="image/png")

    @app.get("/api/analysis", tags=["analysis"])
    def analysis() -> list[dict[str, Any]]:
        """Runs under analysis/, align/ and lt-vit/ (and interpretation figures) with their figures and tables."""
        return data.analysis_runs()

    @app.get("/api/tables/{kind}/{name}", tags=["analysis"])
    def analysis_table(
        kind: str,
        name: str,
        path: str = Query(..., min_length=1, max_length=500),
        offset: int = Query(0, ge=0),
        limit: int = Query(100, ge=1, le=200),
    ) -> dict[str, Any]:
        """Rows of a parquet/csv/json table under ``<kind>/<name>/`` (kind: analysis, align or lt-vit)."""
        return data.analysis_table(kind, name, path, offset, limit)

    @app.get("/api/files/{kind}/{name}/{path:path}", tags=["analysis"], response_class=FileResponse)
    def artefact_file(kind: str, name: str, path: str) -> FileResponse:
        """A figure or small text file from inside an artefact (never outside the workspace)."""
        file, media = data.artefact_file(kind, name, path)
        return FileResponse(file, media_type=media)

    @app.get("/api/search", tags=["search"])
    def search(
        q: str = Query(..., min_length=1, max_length=300),
        run: str | None = Query(None, max_length=200),
        k: int = Query(12, ge=1, le=100),
    ) -> dict[str, Any]:
        """Images for a text query against an alignment index (404 with the reason when there is none)."""
        return data.search(q, run, k)

    @app.get("/api/search/indexes", tags=["search"])
    def search_indexes() -> dict[str, Any]:
        """Align runs with a search index; ``reason`` says why search is unavailable when there is none."""
        indexes = data.search_indexes()
        reason = (
            None
            if indexes
            else "no alignment search index in this workspace; build one with `cxrlens align train` then "
            "`cxrlens align index --run RUN`"
        )
        return {"indexes": indexes, "reason": reason}

    @app.post(
        "/api/upload",
        tags=["upload"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in UPLOAD_TYPES},
            }
        },
    )
    async def upload(request: Request, model: str = Query(..., max_length=200)) -> dict[str, Any]:
        """Write a report for one uploaded image (raw body: PNG, JPEG or DICOM) with an interpretation run."""
        if not cfg.uploads:
            raise Forbidden("uploads are disabled for this viewer")
        check_name(model, "interpretation run")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in UPLOAD_TYPES:
            raise UnsupportedType(
                f"content type {ctype or '(none)'!r} not accepted; send one of {', '.join(sorted(UPLOAD_TYPES))}"
            )
        limit = cfg.upload_limit_bytes
        too_big = f"upload larger than the limit of {limit:,} bytes"
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise BadRequest("content-length header is not a number")
            if int(declared) > limit:
                raise TooLarge(too_big)
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise TooLarge(too_big)
        if not body:
            raise BadRequest("empty upload")
        if not (data.ws.interpret(model) / "manifest.json").exists():
            raise NotFound(f"interpretation run {model!r} not found in the workspace")
        return await run_in_threadpool(_report_upload, models, data, model, bytes(body), UPLOAD_TYPES[ctype])

    return app


def _report_upload(models: _Models, data: WorkspaceData, run: str, body: bytes, suffix: str) -> dict[str, Any]:
    """Report of one uploaded image (written to a private temporary file, deleted afterwards)."""
    model = models.get(run)
    with tempfile.TemporaryDirectory(prefix="cxrlens-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(body)
        ((_, report, problem),) = model.report_files([path])
    if report is None:
        raise BadRequest(f"the uploaded file is not a readable image ({problem})")
    grid = list(model.grid) if model.grid else None
    return {
        "model": run,
        "generated": data.present_report(report.to_json(), run, None, grid),
        "text": report.text,
    }


def serve(workspace: str | Path, config: ViewerConfig) -> None:
    """Run the viewer with uvicorn until interrupted (blocking)."""
    uvicorn.run(create_app(workspace, config), host=config.host, port=config.port, log_level="info")
