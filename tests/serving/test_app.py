"""The retention workspace (issue 19) through FastAPI's test client over lists published by hand: keys and roles
on every route, filters and sorting that are parameterised, counts and totals of the view, profiles with the
score history and right-to-left Hebrew, exports of exactly the view, the audit log without personal data, a
forgotten customer gone at once, security headers and JSON errors."""

from __future__ import annotations

import datetime as dt
import io
import json

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from serving.app import SESSION_COOKIE, create_app, score_history_svg
from serving.publish import publish_lists, remove_customers
from serving.users import UserError, UserStore

EARLIER, AS_OF = dt.date(2026, 10, 1), dt.date(2026, 11, 1)


def _at_risk(probabilities: list[float]) -> pd.DataFrame:
    n = len(probabilities)
    value = [100.0 * (i + 1) for i in range(n)]
    return pd.DataFrame({
        "rank": range(1, n + 1), "customer_id": [f"C{i:03d}" for i in range(n)],
        "churn_probability": probabilities,
        "risk_tier": ["high" if p >= 0.6 else "medium" for p in probabilities],
        "predicted_cltv": [v / p for v, p in zip(value, probabilities)], "value_at_risk": value,
        "p_alive": [0.4, 0.25, 0.8, 0.55][:n],
        "rfm_segment": ["At Risk", "Lost", "Champions", "At Risk"][:n],
        "country": ["CZ", "IL", "US", "DE"][:n], "language": ["cs", "he", "en", "de"][:n],
        "reason_1": ["Bez nákupu 143 dnů", "אין רכישה כבר יומיים", "No purchase for 90 days", "143 Tage ohne Kauf"][:n],
        "recommended_action": ["Automatický e-mail", "מייל אוטומטי לחידוש הקשר", "Automated re-engagement e-mail",
                               "Automatische Reaktivierungs-E-Mail"][:n],
        "offer": ["žádná", "ללא", "none", "keines"][:n],
        "playbook": ["automated-email", "automated-email", "high-value-care", "automated-email"][:n],
        "cost_per_contact": [0.2, 0.2, 8.0, 0.2][:n], "success_rate": [0.03, 0.03, 0.15, 0.03][:n],
        "expected_net_value": [1.0] * n, "currency": ["USD"] * n,
        "contact_group": ["treatment", "treatment", "treatment", "control"][:n],
        "campaign_id": ["c-at_risk"] * n, "email": [f"c{i}@example.com" for i in range(n)],
        "churn_model_version": ["3"] * n, "run_id": ["r"] * n,
        "shap_contributions": [json.dumps({"base": -1.0, "features": [["days_since_last_purchase", 143, 1.5 + p],
                                                                      ["orders", 2, -0.25]], "other": 0.1})
                               for p in probabilities],
        "purchase_history": [json.dumps([["2026-08", 3, 0, 120.5], ["2026-09", 1, 1, 10.0]])] * n})


def build_workspace(folder, url: str | None = None) -> dict:
    """Two as-of dates of both lists published by hand (Czech, Hebrew, English and German customers, one in the
    control group, contact fields), three users and one champion; in SQLite, or at ``url`` (PostgreSQL)."""
    outputs = folder / "outputs"
    url = url or f"sqlite:///{folder / 'outputs' / 'lists.db'}"
    winback = pd.DataFrame({"rank": [1], "customer_id": ["W1"], "reactivation_probability": [0.2],
                            "value_if_reactivated": [500.0], "expected_winback_value": [100.0],
                            "risk_tier": ["lapsed"], "country": ["US"], "language": ["en"],
                            "recommended_action": ["Automated win-back e-mail"], "offer": ["10% off"],
                            "playbook": ["winback-email"], "cost_per_contact": [0.2], "success_rate": [0.02],
                            "contact_group": ["treatment"], "campaign_id": ["c-winback"], "run_id": ["r"]})
    publish_lists({"at_risk": _at_risk([0.5, 0.7, 0.3, 0.8]), "winback": winback}, outputs, EARLIER,
                  {"run_id": "r"}, sql=url)
    publish_lists({"at_risk": _at_risk([0.6, 0.9, 0.45, 0.85]), "winback": winback}, outputs, AS_OF,
                  {"run_id": "r"}, sql=url)
    users = UserStore(folder / "workspace.db")
    keys = {role: users.add(role, role) for role in ("viewer", "marketer", "admin")}
    champions = [{"name": "churn-classifier", "version": "3", "aliases": ["champion"], "description": "Promoted.",
                  "decision": "promoted", "created": "2026-11-01", "metrics": {"roc_auc": 0.95}}]
    backtest = outputs / "backtest" / "as_of=2026-08-03"
    backtest.mkdir(parents=True)
    (backtest / "report.json").write_text(json.dumps({
        "as_of": "2026-08-03", "churn": {"roc_auc": 0.9519, "ece": 0.012, "n": 3551},
        "baselines": {"btyd": {"churn": {"roc_auc": 0.9375, "ece": 0.04}}, "recency_rule": {"churn": {"roc_auc": 0.92}}}}))
    _png(backtest / "roc.png")
    report = outputs / "reports" / "as_of=2026-11-01" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<!doctype html><title>KPIs</title><style>p{}</style><p>Retention KPIs as of 2026-11-01</p>")
    app = create_app(url, users, include_contact=True, champions=lambda: champions, backtest_dir=lambda: backtest,
                     report=lambda: report)
    return {"app": app, "keys": keys, "users": users, "outputs": outputs, "url": url}


def _png(path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(3, 2))
    axes.plot([0, 1], [0, 1])
    figure.savefig(path)
    plt.close(figure)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def workspace(request, tmp_path_factory):
    """The workspace over SQLite (the default) and over PostgreSQL (any SQLAlchemy URL): every test runs on both."""
    url = request.getfixturevalue("postgres_server")() if request.param == "postgresql" else None
    return build_workspace(tmp_path_factory.mktemp("app"), url)


def _client(workspace, role: str | None = None) -> TestClient:
    client = TestClient(workspace["app"], follow_redirects=False)
    if role:
        client.headers["Authorization"] = f"Bearer {workspace['keys'][role]}"
    return client


# every route with the least role that may use it (a new route fails this test until it is listed)
ROUTES = {
    ("GET", "/"): "viewer", ("GET", "/lists/{name}"): "viewer", ("GET", "/lists/{name}/export.{fmt}"): "marketer",
    ("GET", "/lists/{name}/export/{target}"): "marketer",
    ("GET", "/customers/{customer_id}"): "viewer", ("GET", "/campaigns"): "viewer", ("GET", "/models"): "viewer",
    ("GET", "/models/plots/{filename}"): "viewer", ("GET", "/reports/latest"): "viewer",
    ("POST", "/logout"): "viewer", ("GET", "/api/lists/{name}"): "viewer",
    ("GET", "/api/lists/{name}/export"): "marketer", ("GET", "/api/customers/{customer_id}"): "viewer",
    ("GET", "/api/campaigns"): "viewer", ("GET", "/api/champions"): "viewer", ("GET", "/api/users"): "admin",
    ("GET", "/api/audit"): "admin", ("GET", "/api/openapi.json"): "viewer", ("GET", "/api/docs"): "viewer",
    ("GET", "/api/health"): None, ("GET", "/login"): None, ("POST", "/login"): None,
}
EXAMPLE = {"{name}": "at_risk", "{fmt}": "csv", "{target}": "crm", "{customer_id}": "C001", "{filename}": "roc.png"}


def _routes(app) -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD" and not route.path.startswith("/static"):
                found.add((method, route.path))
    return found


def test_every_route_refuses_an_anonymous_and_an_under_privileged_caller(workspace):
    assert _routes(workspace["app"]) == set(ROUTES)
    order = ("viewer", "marketer", "admin")
    for (method, path), least in ROUTES.items():
        url = path
        for placeholder, value in EXAMPLE.items():
            url = url.replace(placeholder, value)
        anonymous = _client(workspace).request(method, url)
        if least is None:
            assert anonymous.status_code in (200, 401, 303), (path, anonymous.status_code)  # 401: a bad sign-in
            continue
        if path.startswith("/api"):
            assert anonymous.status_code == 401 and "error" in anonymous.json(), path
        else:
            assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login"), path
        for role in order[:order.index(least)]:
            assert _client(workspace, role).request(method, url).status_code == 403, (path, role)
        allowed = _client(workspace, least).request(method, url)
        assert allowed.status_code in (200, 303), (path, least, allowed.status_code, allowed.text[:300])
    bad = _client(workspace)
    bad.headers["Authorization"] = "Bearer ck_nope_nope"
    assert bad.get("/api/lists/at_risk").status_code == 401


def test_health_needs_no_key_and_names_the_latest_lists(workspace):
    body = _client(workspace).get("/api/health").json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["lists"]["at_risk"] == {"as_of": AS_OF.isoformat(), "rows": 4,
                                        "model_versions": {"churn_model_version": "3"}}


def test_filters_sorting_paging_and_the_view_s_totals(workspace):
    client = _client(workspace, "viewer")
    view = client.get("/api/lists/at_risk", params={"tier": "high", "sort": "churn_probability",
                                                    "order": "desc"}).json()
    assert [r["customer_id"] for r in view["rows"]] == ["C001", "C003", "C000"]
    assert view["total"] == 3 and view["counts"] == {"treatment": 2, "control": 1}
    assert view["totals"]["value_at_risk"] == pytest.approx(100 + 200 + 400)
    assert "email" not in view["columns"]  # a viewer never sees contact fields
    assert "shap_contributions" not in view["columns"] and "purchase_history" not in view["rows"][0]
    two = client.get("/api/lists/at_risk", params=[("country", "CZ"), ("country", "US"), ("size", "1"),
                                                   ("page", "2")]).json()
    assert two["total"] == 2 and two["pages"] == 2 and [r["customer_id"] for r in two["rows"]] == ["C002"]
    earlier = client.get("/api/lists/at_risk", params={"as_of": EARLIER.isoformat(), "score_min": 0.6}).json()
    assert earlier["as_of"] == EARLIER.isoformat() and {r["customer_id"] for r in earlier["rows"]} == {"C001", "C003"}
    assert client.get("/api/lists/at_risk", params={"q": "C00", "value_min": 250}).json()["total"] == 2
    marketer = _client(workspace, "marketer").get("/api/lists/at_risk").json()
    assert "email" in marketer["columns"]


@pytest.mark.parametrize("params", [
    {"sort": "churn_probability; DROP TABLE at_risk"}, {"sort": "email"}, {"order": "sideways"},
    {"score_min": "1 OR 1=1"}, {"as_of": "2026-01-01"}, {"size": "100000"}, {"group": "everyone"},
])
def test_an_injection_or_bad_filter_is_a_400_with_a_message(workspace, params):
    response = _client(workspace, "viewer").get("/api/lists/at_risk", params=params)
    assert response.status_code == 400 and response.json()["error"] and "Traceback" not in response.text
    assert _client(workspace, "viewer").get("/api/lists/at_risk").json()["total"] == 4  # the table is intact


def test_text_filters_are_bound_parameters(workspace):
    client = _client(workspace, "viewer")
    for attempt in ("' OR '1'='1", "C%", "C_01", "%"):
        assert client.get("/api/lists/at_risk", params={"q": attempt}).json()["total"] == 0, attempt
        assert client.get("/api/lists/at_risk", params={"country": attempt}).json()["total"] == 0, attempt
    assert client.get("/api/lists/nope").status_code == 404


def test_a_profile_has_the_history_the_language_s_direction_and_is_audited_without_pii(workspace):
    client = _client(workspace, "viewer")
    body = client.get("/api/customers/C001").json()
    assert body["list"] == "at_risk" and body["latest"]["churn_probability"] == 0.9
    assert [r["as_of"] for r in body["lists"]["at_risk"]] == [AS_OF.isoformat(), EARLIER.isoformat()]
    assert "email" not in body["latest"]
    page = client.get("/customers/C001").text
    assert 'lang="he" dir="rtl"' in page and "אין רכישה כבר יומיים" in page and "<svg" in page
    assert "0.900" in page and "0.700" in page
    assert "P(alive), BG/NBD</dt><dd>0.250</dd>" in page and body["latest"]["p_alive"] == 0.25
    assert 'class="chart waterfall"' in page and "days_since_last_purchase = 143" in page and "+2.40" in page
    assert body["latest"]["shap_contributions"]["features"][0] == ["days_since_last_purchase", 143, 2.4]
    assert body["latest"]["purchase_history"][0] == ["2026-08", 3, 0, 120.5]
    assert 'class="chart timeline"' in page and "2026-08: 3 orders, net 120.50" in page and "2026-09: 1 refunds" in page
    czech = client.get("/customers/C000").text
    assert 'lang="cs" dir="ltr"' in czech and "Bez nákupu 143 dnů" in czech
    assert client.get("/api/customers/NOPE").status_code == 404
    log = _client(workspace, "admin").get("/api/audit").json()
    views = [e for e in log if e["action"] == "profile"]
    assert views and all(e["target"] != "C001" and "C001" not in str(e) for e in log)
    assert workspace["users"].pseudonym("C001") in {e["target"] for e in views}


def test_an_export_holds_exactly_the_view_and_is_audited(workspace):
    from openpyxl import load_workbook

    client = _client(workspace, "marketer")
    csv = client.get("/lists/at_risk/export.csv", params={"tier": "high", "group": "treatment"})
    assert csv.status_code == 200 and csv.content.startswith("\ufeff".encode())
    frame = pd.read_csv(io.BytesIO(csv.content), encoding="utf-8-sig")
    assert sorted(frame["customer_id"]) == ["C000", "C001"] and "email" in frame.columns
    xlsx = client.get("/api/lists/at_risk/export", params={"format": "xlsx", "country": "IL"})
    sheet = load_workbook(io.BytesIO(xlsx.content))["list"]
    header = [c.value for c in sheet[1]]
    row = {h: c for h, c in zip(header, sheet[2])}
    assert row["customer_id"].value == "C001" and row["reason_1"].alignment.readingOrder == 2
    # through the ready crm target: its rows (treatment only: C003 of the view is in the control group), its
    # columns in its order, plain UTF-8; the page links every target that takes the list
    crm = client.get("/lists/at_risk/export/crm", params={"country": ["IL", "DE"]})
    assert crm.status_code == 200 and "at_risk-2026-11-01-crm.csv" in crm.headers["content-disposition"]
    frame = pd.read_csv(io.BytesIO(crm.content))
    assert frame["customer_id"].tolist() == ["C001"]
    assert frame.columns.tolist() == ["customer_id", "email", "language", "campaign_id", "recommended_action",
                                      "offer", "playbook", "risk_tier"]
    same = client.get("/api/lists/at_risk/export", params={"target": "crm", "country": ["IL", "DE"]})
    assert same.content == crm.content
    assert client.get("/lists/at_risk/export/nope").status_code == 404
    assert "crm" in client.get("/lists/at_risk/export/nope").text
    assert client.get("/api/lists/at_risk/export", params={"target": "../x"}).status_code == 400
    assert 'href="/lists/at_risk/export/excel?' in client.get("/lists/at_risk").text
    exports = [e for e in _client(workspace, "admin").get("/api/audit").json() if e["action"].startswith("export")]
    assert {e["action"] for e in exports} == {"export csv", "export xlsx", "export crm"}


def test_sign_in_gives_a_strict_signed_session_and_bad_keys_are_slowed(workspace, monkeypatch):
    import serving.app as app_module

    client = _client(workspace)
    page = client.get("/login")
    assert page.status_code == 200 and "API key" in page.text
    signed = client.post("/login", content=f"key={workspace['keys']['viewer']}&next=/lists/winback",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert signed.status_code == 303 and signed.headers["location"] == "/lists/winback"
    cookie = signed.headers["set-cookie"].lower()
    assert SESSION_COOKIE in cookie and "httponly" in cookie and "samesite=strict" in cookie and "max-age" in cookie
    assert client.get("/lists/winback").status_code == 200  # the cookie signs the browser in
    client.cookies.set(SESSION_COOKIE, "forged." + client.cookies[SESSION_COOKIE][-10:])
    assert client.get("/lists/winback").status_code == 303
    away = client.post("/login", content=f"key={workspace['keys']['viewer']}&next=//evil.example",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert away.headers["location"] == "/"  # never an open redirect
    waits = []

    async def sleep(seconds):
        waits.append(seconds)

    monkeypatch.setattr(app_module.asyncio, "sleep", sleep)
    fresh = create_app(workspace["url"], workspace["users"])
    for _ in range(6):
        bad = TestClient(fresh).post("/login", content="key=ck_x_y",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert bad.status_code == 401 and "not valid" in bad.text
    assert waits == [0.25, 0.5, 1.0]  # after three failures each attempt waits longer


def test_every_response_carries_strict_security_headers_and_pages_have_no_inline_script(workspace):
    client = _client(workspace, "viewer")
    for url in ("/lists/at_risk", "/api/health", "/login", "/customers/C002", "/campaigns", "/models", "/api/docs"):
        response = client.get(url)
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp and "script-src 'self'" in csp
        assert response.headers["x-frame-options"] == "DENY" and response.headers["x-content-type-options"] == "nosniff"
        if response.headers["content-type"].startswith("text/html"):
            assert "<script" not in response.text and "style=" not in response.text and "http" not in \
                response.text.replace("http-equiv", ""), url


def test_the_kpi_report_is_linked_and_served_with_its_own_strict_policy(workspace):
    client = _client(workspace, "viewer")
    assert 'href="/reports/latest"' in client.get("/campaigns").text
    page = client.get("/reports/latest")
    assert page.status_code == 200 and "Retention KPIs as of 2026-11-01" in page.text
    policy = page.headers["content-security-policy"]
    assert "script" not in policy and "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert _client(workspace).get("/reports/latest").status_code == 303  # anonymous: to the sign-in page
    bare = TestClient(create_app(workspace["url"], workspace["users"]))
    bare.headers["Authorization"] = f"Bearer {workspace['keys']['viewer']}"
    assert bare.get("/reports/latest").status_code == 404 and "churn report" in bare.get("/reports/latest").text


def test_campaigns_and_champions(workspace):
    client = _client(workspace, "viewer")
    campaigns = client.get("/api/campaigns").json()
    latest = next(c for c in campaigns if c["list"] == "at_risk" and c["as_of"] == AS_OF.isoformat())
    assert (latest["treatment"], latest["control"]) == (3, 1)
    assert latest["cost"] == pytest.approx(0.2 + 0.2 + 8.0)
    assert latest["expected_saved_value"] == pytest.approx(100 * 0.03 + 200 * 0.03 + 300 * 0.15)
    assert latest["playbooks"] == {"automated-email": 3, "high-value-care": 1}
    assert "8.40" in client.get("/campaigns").text
    assert client.get("/api/champions").json()[0]["version"] == "3"
    models = client.get("/models").text
    assert "churn-classifier · champion v3" in models and "0.9519" in models and "0.9375" in models
    assert '<img src="/models/plots/roc.png"' in models
    plot = client.get("/models/plots/roc.png")
    assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
    for attempt in ("..%2Freport.json", "report.json", "%2Fetc%2Fpasswd", "nope.png"):
        assert client.get(f"/models/plots/{attempt}").status_code == 404, attempt


def test_a_forgotten_customer_is_gone_everywhere_at_once(workspace, tmp_path):
    client = _client(workspace, "viewer")
    assert client.get("/api/customers/C002").status_code == 200
    remove_customers(workspace["outputs"], {"C002"}, workspace["url"])
    assert client.get("/api/customers/C002").status_code == 404
    assert client.get("/customers/C002").status_code == 404
    assert client.get("/api/lists/at_risk", params={"q": "C002"}).json()["total"] == 0


def test_an_api_error_is_json_without_a_stack_trace(workspace, monkeypatch):
    app = create_app(workspace["url"], workspace["users"])
    monkeypatch.setattr(app.state.workspace, "campaigns", lambda: 1 / 0)
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {workspace['keys']['viewer']}"
    response = client.get("/api/campaigns")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error; the server log has the details"}


def test_users_keys_are_hashed_revocable_and_roles_checked(tmp_path):
    users = UserStore(tmp_path / "w.db")
    key = users.add("ana", "marketer")
    assert users.verify(key).role == "marketer" and users.verify(key + "x") is None
    raw = (tmp_path / "w.db").read_bytes()
    assert key.split("_", 2)[2].encode() not in raw  # only the hash is stored
    with pytest.raises(UserError, match="unknown role"):
        users.add("bob", "owner")
    with pytest.raises(UserError, match="exists"):
        users.add("ana", "viewer")
    users.revoke("ana")
    assert users.verify(key) is None  # at once, although the key was verified a moment ago
    assert [u["name"] for u in users.list()] == ["ana"] and users.list()[0]["revoked"]


def test_the_waterfall_runs_from_the_base_value_to_the_score():
    from serving.app import waterfall_svg

    svg = waterfall_svg({"base": -1.0, "features": [["a", 1, 2.0], ["b", None, -0.5]], "other": 0.25})
    assert svg.count("<rect") == 3 and svg.count('class="up"') == 2 and svg.count('class="down"') == 1
    assert "b (missing)" in svg and "+0.75" in svg  # -1 + 2 - 0.5 + 0.25
    assert waterfall_svg(None) == ""


def test_the_score_history_chart_is_plain_svg():
    svg = score_history_svg([("2026-10-01", 0.7), ("2026-11-01", 0.9)])
    assert svg.startswith("<svg") and svg.count("<circle") == 2 and "script" not in svg
    assert score_history_svg([]) == ""


def test_concurrent_requests_for_one_view_compute_it_once(workspace):
    """Under load the first requests of a view after a publish must not all scan the table (a stampede)."""
    import threading
    import time

    from serving.workspace import Workspace

    space = Workspace(workspace["url"])
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return 42

    results = []
    threads = [threading.Thread(target=lambda: results.append(space._cached("v1", "key", slow))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [42] * 8 and len(calls) == 1
    assert space._cached("v2", "key", lambda: 7) == 7  # a new publish computes again


def test_a_connection_the_database_server_dropped_costs_no_request(workspace):
    """No liveness check runs before each use of a pooled connection (a round trip per request): one the server
    dropped (a restart, an idle timeout) fails its first statement, and the read runs again on a new one."""
    if not workspace["url"].startswith("postgresql"):
        pytest.skip("SQLite has no server to drop a connection")
    import sqlalchemy as sa

    client = _client(workspace, "viewer")
    listed = client.get("/api/lists/at_risk").json()["total"]  # the pool now holds a connection
    admin = sa.create_engine(workspace["url"], isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        dropped = db.execute(sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    admin.dispose()
    assert dropped >= 1
    assert client.get("/api/customers/C001").json()["customer_id"] == "C001"
    assert client.get("/api/lists/at_risk").json()["total"] == listed
    assert client.get("/api/health").json()["database"] == "ok"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_profile_reads_every_list_in_one_statement_each_row_with_its_own_columns(database, request, tmp_path):
    """A customer on both lists (at risk at the earlier date, lapsed at the later one): one statement (a UNION ALL
    of the lists) gives each list's rows with that list's columns only, latest first; and so do two when a column
    holds different types on the two lists (which a UNION cannot)."""
    import sqlalchemy as sa

    from serving.workspace import Workspace

    def winback(country) -> pd.DataFrame:
        return pd.DataFrame({"rank": [1], "customer_id": ["C001"], "reactivation_probability": [0.2],
                             "value_if_reactivated": [500.0], "expected_winback_value": [100.0],
                             "risk_tier": ["lapsed"], "country": [country], "run_id": ["r"]})

    for country, statements in (("US", 1), (840, 2)):  # 840: the country as a number, a type at_risk has not
        folder = tmp_path / str(statements)
        url = (request.getfixturevalue("postgres_server")() if database == "postgresql"
               else f"sqlite:///{folder / 'lists.db'}")
        publish_lists({"at_risk": _at_risk([0.5, 0.7]), "winback": winback(country).iloc[:0]}, folder, EARLIER,
                      {"run_id": "r"}, sql=url)
        publish_lists({"at_risk": _at_risk([0.5, 0.7]).iloc[:0], "winback": winback(country)}, folder, AS_OF,
                      {"run_id": "r"}, sql=url)
        space = Workspace(url)
        space.customer("C001")  # reflects the tables
        executed = []
        sa.event.listen(space.engine, "before_cursor_execute", lambda *args: executed.append(args[2]))
        found = space.customer("C001")
        assert len(executed) == statements
        assert found["list"] == "winback" and list(found["lists"]) == ["at_risk", "winback"]
        assert [r["as_of"] for r in found["lists"]["at_risk"]] == [EARLIER.isoformat()]
        assert found["lists"]["at_risk"][0]["churn_probability"] == 0.7
        assert "reactivation_probability" not in found["lists"]["at_risk"][0]
        assert found["latest"]["reactivation_probability"] == 0.2 and "churn_probability" not in found["latest"]
        assert found["latest"]["country"] in ("US", 840) and space.customer("C009") is None
        space.engine.dispose()
