"""The retention workspace: server-rendered pages and an HTTP API over the published lists (``churn serve``).

Everything shown is read from the SQL tables the publisher writes (:mod:`serving.workspace`); nothing is scored
here. Pages: ``/lists/<list>`` (filters, sorting, paging, counts and totals of the view, CSV/XLSX export of exactly
that view, plain or through the config's export targets), ``/customers/<id>`` (scores, P(alive), reasons in the customer's language and direction, the score history as
an SVG line chart, the action, offer, playbook and contact group), ``/campaigns``, ``/models``. The API under
``/api`` returns the same as JSON; its OpenAPI schema is ``/api/openapi.json`` and ``/api/docs`` lists the routes
(server-rendered: no CDN). ``/api/health`` is the only route without authentication besides the sign-in page.

Authentication: an API key (:mod:`serving.users`) as ``Authorization: Bearer <key>`` or ``X-API-Key``, or, in a
browser, a signed session cookie set by signing in with a key (HttpOnly, SameSite=Strict, expiring after
``SESSION_HOURS``). Roles: viewer < marketer (contact fields, exports) < admin (user management, the audit log).
Repeated bad keys from one client are slowed down. Every response carries a Content-Security-Policy without
inline scripts or styles, frame denial and no-sniff; API errors are JSON with a message and no stack trace.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import pydantic_core
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.lists import LISTS
from serving.users import User, UserStore
from serving.workspace import ListQuery, QueryError, Workspace

HERE = Path(__file__).parent
SESSION_COOKIE = "churn_session"
SESSION_HOURS = 8
FAILURES_BEFORE_DELAY = 3
FAILURE_WINDOW_SECONDS = 300
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
# the KPI report is one self-contained file (its style inline, its plots data: images) and has no script at all
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
              "frame-ancestors 'none'; base-uri 'none'")
# threads of the hot API routes' reads from a database server: fewer than SQLAlchemy's pool of 5 connections, so
# that none waits for one
DB_THREADS = 4
log = logging.getLogger("churn.app")


class _SecurityHeaders:
    """Adds the security headers to every response: a plain ASGI middleware (Starlette's ``BaseHTTPMiddleware``
    runs each request through an extra task and memory streams, which cost more than a list page itself)."""

    FIXED = ((b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
             (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store"))
    NAMES = {b"content-security-policy", *(name for name, _ in FIXED)}

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        policy = (REPORT_CSP if scope["path"].startswith("/reports/") else CSP).encode()

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in self.NAMES]
                message = {**message, "headers": [*headers, (b"content-security-policy", policy), *self.FIXED]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _JSON(JSONResponse):
    """JSON written by pydantic-core (Rust), in a third of the standard library encoder's time (which was the
    largest part of a list page's); a NaN or infinity becomes null, where the standard encoder fails."""

    def render(self, content) -> bytes:
        return pydantic_core.to_json(content, inf_nan_mode="null")


class NotSignedIn(Exception):
    """A page asked for by someone without a session: sent to the sign-in page."""


def _direction(language: str | None) -> str:
    """The HTML ``dir`` of a text in ``language``."""
    from serving.exports import is_right_to_left

    return "rtl" if is_right_to_left(language) else "ltr"


def score_history_svg(points: list[tuple[str, float]], width: int = 560, height: int = 180) -> str:
    """A line chart of (as-of date, score) as inline SVG markup (no script, no external asset)."""
    if not points:
        return ""
    pad, inner_w, inner_h = 36, width - 48, height - 48
    n = len(points)
    xs = [pad + (inner_w * i / (n - 1) if n > 1 else inner_w / 2) for i in range(n)]
    ys = [12 + inner_h * (1 - min(max(v, 0.0), 1.0)) for _, v in points]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(zip(xs, ys)))
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{d}: {v:.3f}</title></circle>'
                   for x, y, (d, v) in zip(xs, ys, points))
    anchors = ["start"] + ["middle"] * (n - 2) + ["end"] if n > 1 else ["middle"]
    labels = "".join(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="{a}">{d}</text>'
                     for x, a, (d, _) in zip(xs, anchors, points))
    axis = "".join(f'<text x="4" y="{12 + inner_h * (1 - t) + 4:.1f}">{t:.1f}</text>'
                   f'<line x1="{pad}" x2="{pad + inner_w}" y1="{12 + inner_h * (1 - t):.1f}" '
                   f'y2="{12 + inner_h * (1 - t):.1f}" class="grid"/>' for t in (0.0, 0.5, 1.0))
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="score history">{axis}'
            f'<path d="{path}" class="line"/>{dots}{labels}</svg>')


def waterfall_svg(contributions: str | dict | None, width: int = 640) -> str:
    """The customer's TreeSHAP waterfall as inline SVG: from the model's base value, each top driver's
    contribution (raw-score units: log-odds for a classifier) as a bar from the running total, then the rest of
    the features, ending at the customer's raw score. Bars that raise the score are red, those that lower it
    blue."""
    import json
    from html import escape

    if not contributions:
        return ""
    data = json.loads(contributions) if isinstance(contributions, str) else contributions
    steps = [(f"{name} = {value}" if value is not None else f"{name} (missing)", float(c))
             for name, value, c in data["features"]] + [("all other features", float(data["other"]))]
    totals, running = [float(data["base"])], float(data["base"])
    for _, c in steps:
        running += c
        totals.append(running)
    low, high = min(totals), max(totals)
    span = (high - low) or 1.0
    label_w, bar_w, row_h = 300, width - 300 - 70, 22
    height = row_h * (len(steps) + 2) + 10

    def x(v: float) -> float:
        return label_w + bar_w * (v - low) / span

    parts = [f'<text x="4" y="{row_h - 6}">base value</text><line x1="{x(totals[0]):.1f}" x2="{x(totals[0]):.1f}" '
             f'y1="4" y2="{height - 6}" class="grid"/><text x="{x(totals[0]) + 4:.1f}" y="{row_h - 6}">'
             f'{totals[0]:+.2f}</text>']
    for i, (label, c) in enumerate(steps):
        y = row_h * (i + 1) + 4
        start, end = totals[i], totals[i + 1]
        left, right = sorted((x(start), x(end)))
        cls = "up" if c > 0 else "down"
        parts.append(f'<text x="4" y="{y + row_h - 8}">{escape(label[:44])}</text>'
                     f'<rect x="{left:.1f}" y="{y}" width="{max(right - left, 1):.1f}" height="{row_h - 6}" '
                     f'class="{cls}"><title>{escape(label)}: {c:+.3f}</title></rect>'
                     f'<text x="{right + 4:.1f}" y="{y + row_h - 8}">{c:+.2f}</text>')
    y = row_h * (len(steps) + 1) + 4
    parts.append(f'<text x="4" y="{y + row_h - 8}">score (raw)</text><text x="{x(totals[-1]) + 4:.1f}" '
                 f'y="{y + row_h - 8}">{totals[-1]:+.2f}</text>')
    return (f'<svg class="chart waterfall" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="what drives the score">{"".join(parts)}</svg>')


def timeline_svg(history: str | list | None, until: str | None = None, width: int = 640, height: int = 170) -> str:
    """The purchase timeline as inline SVG: orders (blue, up) and refunds (red, down) per month over the months
    the published history covers, ending with the month before ``until`` (the as-of date)."""
    import json
    from html import escape

    data = json.loads(history) if isinstance(history, str) else (history or [])
    if not data:
        return ""
    last = (str(until)[:7] if until else data[-1][0])
    first = data[0][0]
    months, (y, m) = [], map(int, first.split("-"))
    while f"{y:04d}-{m:02d}" <= last and len(months) < 120:
        months.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    if until and months and months[-1] == last:
        months = months[:-1] or months  # the as-of month has not happened yet
    by = {row[0]: row for row in data}
    top = max([max(r[1], r[2]) for r in data] + [1])
    pad, inner = 28, width - 40
    slot = inner / max(len(months), 1)
    middle = (height - 24) * 0.7
    parts = [f'<line x1="{pad}" x2="{pad + inner}" y1="{middle:.1f}" y2="{middle:.1f}" class="grid"/>',
             f'<text x="2" y="12">{top}</text>']
    for i, month in enumerate(months):
        x = pad + i * slot
        orders, refunds = (by[month][1], by[month][2]) if month in by else (0, 0)
        if orders:
            h = (middle - 14) * orders / top
            parts.append(f'<rect x="{x + 1:.1f}" y="{middle - h:.1f}" width="{max(slot - 2, 1):.1f}" '
                         f'height="{h:.1f}" class="down"><title>{month}: {orders} orders, net '
                         f'{by[month][3]:.2f}</title></rect>')
        if refunds:
            h = (height - 24 - middle) * refunds / top
            parts.append(f'<rect x="{x + 1:.1f}" y="{middle:.1f}" width="{max(slot - 2, 1):.1f}" height="{h:.1f}" '
                         f'class="up"><title>{month}: {refunds} refunds</title></rect>')
        if i % 6 == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 6}">{escape(month)}</text>')
    return (f'<svg class="chart timeline" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="orders and refunds per month">{"".join(parts)}</svg>')


class _Throttle:
    """Bad keys per client: after ``FAILURES_BEFORE_DELAY`` within the window each attempt waits longer."""

    def __init__(self) -> None:
        self.failures: dict[str, deque] = defaultdict(deque)

    def delay(self, client: str) -> float:
        now, seen = time.monotonic(), self.failures[client]
        while seen and seen[0] < now - FAILURE_WINDOW_SECONDS:
            seen.popleft()
        extra = len(seen) - FAILURES_BEFORE_DELAY
        return 0.0 if extra < 0 else min(0.25 * 2 ** extra, 4.0)

    def failed(self, client: str) -> None:
        self.failures[client].append(time.monotonic())


def create_app(sql_url: str, users: UserStore, include_contact: bool = False, champions=None,
               backtest_dir=None, exports=None, report=None) -> FastAPI:
    """The app over the lists at ``sql_url``. ``champions`` is a callable returning the champion of each model
    (rows of :func:`models.tracking.list_versions`), called when the models page or API is asked for;
    ``backtest_dir`` one returning the latest backtest folder (``report.json`` and the plots) or None;
    ``exports`` the config's export targets (None: :data:`common.config.READY_EXPORTS`, as the publisher), which
    a view can be exported through as well as as plain CSV/XLSX; ``report`` one returning the latest KPI report's
    HTML file (:func:`serving.report.latest_report`) or None."""
    from common.config import READY_EXPORTS

    targets = dict(exports or READY_EXPORTS)
    app = FastAPI(title="Churn retention workspace", docs_url=None, redoc_url=None, openapi_url=None,
                  version="1")
    workspace = Workspace(sql_url)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(lists=[s.name for s in LISTS], direction=_direction)
    serializer = URLSafeTimedSerializer(users.secret, salt="churn-session")
    throttle = _Throttle()
    app.state.workspace, app.state.users = workspace, users
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # ---- errors and headers ----------------------------------------------------------------------------------

    def _api(request: Request) -> bool:
        return request.url.path.startswith("/api")

    @app.exception_handler(NotSignedIn)
    async def _to_sign_in(request: Request, exc: NotSignedIn):
        return RedirectResponse("/login?" + urlencode({"next": request.url.path}), status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if _api(request):
            return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)
        return templates.TemplateResponse(request, "error.html", {"status": exc.status_code, "message": exc.detail,
                                                                  "user": None}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        if _api(request):
            return JSONResponse({"error": f"bad request: {problems}"}, status_code=400)
        return templates.TemplateResponse(request, "error.html", {"status": 400, "message": problems,
                                                                  "user": None}, status_code=400)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("request failed: %s", request.url.path)
        return JSONResponse({"error": "internal error; the server log has the details"}, status_code=500)

    app.add_middleware(_SecurityHeaders)

    # ---- who is asking ---------------------------------------------------------------------------------------

    async def _verified(request: Request, key: str) -> User | None:
        """The user of ``key``, after the wait the client's recent bad keys earn; a bad key adds to them."""
        client = request.client.host if request.client else "?"
        wait = throttle.delay(client)
        if wait:
            await asyncio.sleep(wait)
        user = users.verify(key)
        if user is None:
            throttle.failed(client)
        return user

    async def _caller(request: Request) -> User | None:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key")
        if key:
            return await _verified(request, key)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            try:
                data = serializer.loads(cookie, max_age=SESSION_HOURS * 3600)
            except BadSignature:
                return None
            return users.user(data.get("u", ""))
        return None

    def needs(role: str):
        async def dependency(request: Request) -> User:
            user = await _caller(request)
            if user is None:
                if _api(request):
                    raise HTTPException(401, "sign in: send an API key as 'Authorization: Bearer <key>'",
                                        headers={"WWW-Authenticate": "Bearer"})
                raise NotSignedIn()
            if not user.can(role):
                raise HTTPException(403, f"this needs the {role} role; you are {user.role}")
            return user
        return dependency

    viewer, marketer, admin = needs("viewer"), needs("marketer"), needs("admin")

    def _contact(user: User) -> bool:
        return include_contact and user.can("marketer")

    def _query(request: Request) -> ListQuery:
        """The list filters from the query string (repeated keys for several values)."""
        raw = parse_qs(request.url.query, keep_blank_values=False)
        fields = ListQuery.model_fields
        data = {k: (v if fields[k].annotation == list[str] else v[-1]) for k, v in raw.items() if k in fields}
        try:
            return ListQuery.model_validate(data)
        except ValueError as exc:
            raise HTTPException(400, f"bad filter: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") \
                from None

    def _page(name: str, query: ListQuery, user: User, everything: bool = False) -> dict:
        if name not in {s.name for s in LISTS}:
            raise HTTPException(404, f"no list named {name!r}; the lists are {', '.join(s.name for s in LISTS)}")
        try:
            return workspace.page(name, query, _contact(user), everything)
        except QueryError as exc:
            raise HTTPException(400, str(exc)) from None

    def _profile(customer_id: str, user: User) -> dict:
        import json

        found = workspace.customer(customer_id, _contact(user))
        if found is None:
            raise HTTPException(404, "no published list holds this customer")
        for rows in found["lists"].values():
            for row in rows:
                for column in ("shap_contributions", "purchase_history"):
                    if isinstance(row.get(column), str):
                        row[column] = json.loads(row[column])
        users.audit(user, "profile", customer_id=customer_id)
        return found

    def _export(name: str, query: ListQuery, user: User, fmt: str | None, target_name: str | None = None) -> Response:
        """The view as plain CSV (UTF-8 with a BOM, for Excel) or XLSX, or through the export target
        ``target_name`` (its groups, columns and dialect, as the publisher writes it for the whole list)."""
        from common.config import ExportTarget
        from serving.exports import takes, target_file

        import pandas as pd

        if target_name is not None:
            target = targets.get(target_name)
            if target is None or not takes(target, name):
                known = [t for t, spec in targets.items() if takes(spec, name)]
                raise HTTPException(404, f"no export target {target_name!r} for list {name!r}; "
                                         f"expected one of {known}")
            fmt = target.format
        else:
            target = ExportTarget(format="xlsx") if fmt == "xlsx" else ExportTarget(bom=True)
        view = _page(name, query, user, everything=True)
        frame = pd.DataFrame(view["rows"], columns=view["columns"])
        for column in [c for c in frame.columns if c == "as_of" or c.endswith("_date")]:  # SQL holds ISO text
            frame[column] = pd.to_datetime(frame[column], errors="coerce").dt.date
        data = target_file(frame, target)
        what = f"export {target_name or fmt}"
        users.audit(user, what, detail=f"{name} as_of={view['as_of']} rows={len(frame)}")
        media = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if fmt == "xlsx"
                 else "text/csv; charset=utf-8")
        filename = f"{name}-{view['as_of']}{'-' + target_name if target_name else ''}.{fmt}"
        return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    # ---- API -------------------------------------------------------------------------------------------------

    @app.get("/api/health", tags=["api"])
    def health() -> dict:
        """Database reachable, the latest as-of date of each list and the model versions that scored it; the only
        API route without authentication."""
        state = workspace.health()
        return {"status": "ok" if state["database"] == "ok" else "degraded", **state}

    # the two hot API routes: on SQLite their reads are in-process work, which a hop to another thread only adds
    # to, so they run on the event loop. From a database server (PostgreSQL) a request mostly waits for replies,
    # which on the event loop would hold up every other request (on a busy machine, for as long as the server's
    # process waits for a core); a few threads of their own wait instead, fewer than the default thread pool's 40,
    # which cost more CPU in handing the GIL around and fared worse under load (bench/bench_app.py)
    readers = None if workspace.in_process else ThreadPoolExecutor(DB_THREADS, thread_name_prefix="churn-db")

    async def _read_db(work, *args):
        if readers is None:
            return work(*args)
        return await asyncio.get_running_loop().run_in_executor(readers, functools.partial(work, *args))

    @app.get("/api/lists/{name}", tags=["api"], response_class=JSONResponse)
    async def api_list(name: str, request: Request, user: User = Depends(viewer)):
        """One page of a list view, with the view's counts and totals (filters: see /api/docs)."""
        return _JSON(await _read_db(_page, name, _query(request), user))

    @app.get("/api/lists/{name}/export", tags=["api"])
    def api_export(name: str, request: Request, format: str = Query("csv", pattern="^(csv|xlsx)$"),
                   target: str | None = Query(None, pattern="^[A-Za-z0-9_-]{1,64}$",
                                              description="an export target of the config (crm, excel, audit "
                                                          "by default): its rows, columns and file format"),
                   user: User = Depends(marketer)) -> Response:
        """The filtered view (same filters as the list) as a file: plain CSV/XLSX, or through an export target."""
        return _export(name, _query(request), user, format, target)

    @app.get("/api/customers/{customer_id}", tags=["api"], response_class=JSONResponse)
    async def api_customer(customer_id: str, user: User = Depends(viewer)):
        """One customer's rows on every list and as-of date, latest first, with their SHAP contributions."""
        return _JSON(await _read_db(_profile, customer_id, user))

    @app.get("/api/campaigns", tags=["api"])
    def api_campaigns(user: User = Depends(viewer)) -> list[dict]:
        return workspace.campaigns()

    @app.get("/api/champions", tags=["api"])
    def api_champions(user: User = Depends(viewer)) -> list[dict]:
        return _champions()

    @app.get("/api/users", tags=["api"])
    def api_users(user: User = Depends(admin)) -> list[dict]:
        return users.list()

    @app.get("/api/audit", tags=["api"])
    def api_audit(user: User = Depends(admin)) -> list[dict]:
        return users.audit_log()

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi(user: User = Depends(viewer)) -> dict:
        return app.openapi()

    @app.get("/api/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs(request: Request, user: User = Depends(viewer)):
        schema = app.openapi()
        routes = [(path, method.upper(), op.get("summary", ""), op.get("description", ""))
                  for path, ops in schema["paths"].items() for method, op in ops.items()]
        return templates.TemplateResponse(request, "docs.html", {"routes": routes, "user": user})

    def _champions() -> list[dict]:
        if champions is None:
            return []
        return [r for r in champions() if "champion" in (r.get("aliases") or [])]

    # ---- pages -----------------------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/"):
        return templates.TemplateResponse(request, "login.html", {"next": _local(next), "user": None,
                                                                  "error": None})

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request):
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key, target = (form.get("key") or [""])[0].strip(), _local((form.get("next") or ["/"])[0])
        user = await _verified(request, key)
        if user is None:
            return templates.TemplateResponse(request, "login.html", {"next": target, "user": None,
                                                                      "error": "That key is not valid."},
                                              status_code=401)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, serializer.dumps({"u": user.id}), max_age=SESSION_HOURS * 3600,
                            httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.post("/logout")
    def logout(user: User = Depends(viewer)):
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse)
    def home(user: User = Depends(viewer)):
        return RedirectResponse(f"/lists/{LISTS[0].name}", status_code=303)

    @app.get("/lists/{name}", response_class=HTMLResponse)
    def list_page(name: str, request: Request, user: User = Depends(viewer)):
        from serving.exports import takes

        query = _query(request)
        view = _page(name, query, user)
        params = parse_qs(request.url.query)
        def link(**change) -> str:
            merged = {**{k: v for k, v in params.items() if k not in change}, **{k: [str(v)] for k, v in
                                                                               change.items()}}
            return f"/lists/{name}?" + urlencode(merged, doseq=True)
        shown = [c for c in view["columns"] if c not in ("as_of", "run_id", "campaign_id", "success_rate",
                                                          "cost_per_contact") and not c.endswith("_version")]
        return templates.TemplateResponse(request, "list.html", {
            "user": user, "view": view, "query": query, "shown": shown, "link": link,
            "export": urlencode({k: v for k, v in params.items() if k not in ("page", "size")}, doseq=True),
            "can_export": user.can("marketer"),
            "targets": [(t, spec.format) for t, spec in targets.items() if takes(spec, name)]})

    @app.get("/lists/{name}/export.{fmt}")
    def list_export(name: str, fmt: str, request: Request, user: User = Depends(marketer)):
        if fmt not in ("csv", "xlsx"):
            raise HTTPException(404, "export as .csv or .xlsx")
        return _export(name, _query(request), user, fmt)

    @app.get("/lists/{name}/export/{target}")
    def list_export_target(name: str, target: str, request: Request, user: User = Depends(marketer)):
        return _export(name, _query(request), user, None, target)

    @app.get("/customers/{customer_id}", response_class=HTMLResponse)
    def customer_page(customer_id: str, request: Request, user: User = Depends(viewer)):
        found = _profile(customer_id, user)
        spec = next(s for s in LISTS if s.name == found["list"])
        history = sorted((str(r["as_of"]), float(r[spec.probability])) for r in found["lists"][spec.name]
                         if r.get(spec.probability) is not None)
        return templates.TemplateResponse(request, "customer.html", {
            "user": user, "found": found, "row": found["latest"], "spec": spec,
            "history_svg": score_history_svg(history), "history": history,
            "waterfall_svg": waterfall_svg(found["latest"].get("shap_contributions")),
            "timeline_svg": timeline_svg(found["latest"].get("purchase_history"), found["latest"].get("as_of")),
            "contact": _contact(user)})

    @app.get("/campaigns", response_class=HTMLResponse)
    def campaigns_page(request: Request, user: User = Depends(viewer)):
        return templates.TemplateResponse(request, "campaigns.html", {"user": user,
                                                                      "campaigns": workspace.campaigns()})

    def _backtest() -> tuple[Path | None, dict]:
        import json

        folder = backtest_dir() if backtest_dir is not None else None
        if folder is None or not (Path(folder) / "report.json").exists():
            return None, {}
        return Path(folder), json.loads((Path(folder) / "report.json").read_text())

    @app.get("/reports/latest", response_class=HTMLResponse)
    def kpi_report(user: User = Depends(viewer)):
        """The latest KPI report (``churn report``, and every scoring run), as written."""
        found = report() if report is not None else None
        if found is None or not Path(found).exists():
            raise HTTPException(404, "no KPI report yet: `churn report` (or a scoring run) writes one")
        return HTMLResponse(Path(found).read_text(encoding="utf-8"))

    @app.get("/models", response_class=HTMLResponse)
    def models_page(request: Request, user: User = Depends(viewer)):
        from models.catalog import MODELS

        folder, report = _backtest()
        plots = sorted(p.name for p in folder.glob("*.png")) if folder is not None else []
        sections = []
        for spec in MODELS:
            own = report.get(spec.section)
            if not isinstance(own, dict) or "skipped" in own:
                continue
            metrics = [k for k, v in own.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                       and k not in ("n", "best_iteration")]
            baselines = {b: by[spec.section] for b, by in report.get("baselines", {}).items()
                         if isinstance(by, dict) and isinstance(by.get(spec.section), dict)}
            sections.append({"name": spec.name, "section": spec.section, "metrics": metrics, "own": own,
                             "baselines": baselines,
                             "plots": [p for p in plots if spec.name in p or p.startswith(spec.section + "_")
                                       or (spec.section == "churn" and p in ("roc.png", "calibration.png",
                                                                              "gain.png"))]})
        return templates.TemplateResponse(request, "models.html", {
            "user": user, "champions": {c["name"]: c for c in _champions()}, "sections": sections,
            "as_of": report.get("as_of"), "plots": plots})

    @app.get("/models/plots/{filename}")
    def model_plot(filename: str, user: User = Depends(viewer)):
        folder, _ = _backtest()
        names = {p.name: p for p in folder.glob("*.png")} if folder is not None else {}
        if filename not in names:  # only a plot the folder holds: never a path from the request
            raise HTTPException(404, "no such plot in the latest backtest")
        return Response(names[filename].read_bytes(), media_type="image/png")

    return app


def _local(target: str) -> str:
    """Only a path on this site (no open redirect to another host)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def app_for(cfg) -> FastAPI:
    """The app for a pipeline config: the lists it publishes, its users, its MLflow registry."""
    from serving.publish import sql_url
    from serving.users import store_for

    outputs = cfg.resolve(cfg.outputs.dir)

    def champions() -> list[dict]:
        from models.tracking import list_versions

        return list_versions(cfg)

    def backtest_dir() -> Path | None:
        folders = sorted((outputs / "backtest").glob("as_of=*/report.json"))
        return folders[-1].parent if folders else None

    from serving.report import latest_report

    return create_app(sql_url(outputs, cfg.outputs.sql_url), store_for(outputs), cfg.outputs.include_contact,
                      champions, backtest_dir=backtest_dir, exports=cfg.exports,
                      report=lambda: latest_report(outputs))

